//! Answer grading (method.md §4 step 3): a table of realistic model outputs against references,
//! self-grading of real dataset rows (`../shared/data/`: each worked solution must grade correct
//! against its own reference answer), and a no-panic check on hostile input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

use circuitdiff::study::grade::{
    extract_answer, grade, is_equivalent, normalize, reference_answer, Extraction,
};
use serde_json::Value;
use std::path::PathBuf;

use Extraction::{AnswerIs, Boxed, Gsm8k, LastNumber};

/// (model output, raw reference, expected extracted answer, expected method, expected correct)
#[rustfmt::skip]
const CASES: &[(&str, &str, &str, Extraction, bool)] = &[
    // Boxed, nested braces, last box wins.
    ("So the probability is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", "\\frac{1}{2}", Boxed, true),
    ("The side is $\\boxed{2\\sqrt{3}}$.", "2\\sqrt{3}", "2\\sqrt{3}", Boxed, true),
    ("$\\boxed{2\\sqrt{3}}$", "\\sqrt{12}", "2\\sqrt{3}", Boxed, true),
    ("$\\boxed{2\\sqrt{3}}$", "3\\sqrt{2}", "2\\sqrt{3}", Boxed, false),
    ("First \\boxed{3}, but wait, recheck: \\boxed{5}.", "5", "5", Boxed, true),
    ("First \\boxed{5}, then corrected: \\boxed{3}.", "5", "3", Boxed, false),
    ("We get \\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}", "\\dfrac{14}{3}", Boxed, true),
    ("Final: \\boxed{\\frac{3}{4}}", "0.75", "\\frac{3}{4}", Boxed, true),
    ("Final: \\boxed{0.75}", "\\frac{3}{4}", "0.75", Boxed, true),
    ("Hence \\boxed 7$.", "7", "7", Boxed, true),
    ("Hence \\fbox{12}.", "12", "12", Boxed, true),
    ("Thus \\boxed{\\{1,2\\}}", "\\{1, 2\\}", "\\{1,2\\}", Boxed, true),
    ("Echoing: put it in \\boxed{}. I think it is 9.", "9", "9", LastNumber, true),
    ("**Final Answer**\n\\[\n\\boxed{1{,}000}\n\\]", "1000", "1{,}000", Boxed, true),
    ("$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$", "\\left( 3, \\frac{\\pi}{2} \\right)",
     "\\left( 3, \\frac{\\pi}{2} \\right)", Boxed, true),
    ("\\boxed{(3, 1.5708)}", "\\left( 3, \\frac{\\pi}{2} \\right)", "(3, 1.5708)", Boxed, true),
    ("\\boxed{(3, \\frac{\\pi}{2}]}", "\\left( 3, \\frac{\\pi}{2} \\right)",
     "(3, \\frac{\\pi}{2}]", Boxed, false),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", "\\text{Evelyn}", Boxed, true),
    ("\\boxed{p - q}", "p - q", "p - q", Boxed, true),
    ("\\boxed{q - p}", "p - q", "q - p", Boxed, false),
    ("\\boxed{11\\sqrt{2}}", "11\\sqrt2", "11\\sqrt{2}", Boxed, true),
    ("\\boxed{6-5i}", "6 - 5i", "6-5i", Boxed, true),
    ("\\boxed{-\\frac{\\pi}{6}}", "-\\frac{\\pi}{6}", "-\\frac{\\pi}{6}", Boxed, true),
    ("\\boxed{-0.5236}", "-\\frac{\\pi}{6}", "-0.5236", Boxed, true),
    ("\\boxed{\\frac{\\pi}{6}}", "-\\frac{\\pi}{6}", "\\frac{\\pi}{6}", Boxed, false),
    // "The answer is".
    ("Adding them up gives 40 + 2. The answer is 42.", "42", "42", AnswerIs, true),
    ("So THE ANSWER IS: 3.5. Done.", "7/2", "3.5", AnswerIs, true),
    ("Final Answer: The final answer is $\\frac{3}{56}$. I hope it is correct.",
     "\\frac{3}{56}", "$\\frac{3}{56}$", AnswerIs, true),
    ("The answer is 18 eggs\nsome trailing text 99", "18", "18 eggs", AnswerIs, true),
    ("So the answer is 14. Checking, the answer is correct.", "14", "14", AnswerIs, true),
    ("The answer is \\(-7\\).", "-7", "\\(-7\\)", AnswerIs, true),
    ("The answer is 12.", "21", "12", AnswerIs, false),
    // GSM8K style.
    ("She makes 9 * 2 = $18.\n#### 1,234", "1234", "1,234", Gsm8k, true),
    ("Total: 70,000 dollars\n#### 70000", "#### 70,000", "70000", Gsm8k, true),
    ("Total: 70,000 dollars\n#### 7000", "#### 70,000", "7000", Gsm8k, false),
    // Last number fallback.
    ("So the total is 1,234,567 apples.", "1234567", "1,234,567", LastNumber, true),
    ("The temperature dropped to -12 degrees.", "-12", "-12", LastNumber, true),
    ("The temperature dropped to -12 degrees.", "12", "-12", LastNumber, false),
    ("I computed 0.5 in the end", "0.05", "0.5", LastNumber, false),
    ("Each share is 3/4 of a pie", "0.75", "3/4", LastNumber, true),
    // Percentages.
    ("\\boxed{25\\%}", "0.25", "25\\%", Boxed, true),
    ("\\boxed{25\\%}", "25", "25\\%", Boxed, true),
    ("\\boxed{0.25}", "25\\%", "0.25", Boxed, true),
    ("The answer is 40 percent.", "0.4", "40 percent", AnswerIs, true),
    ("\\boxed{25\\%}", "2.5", "25\\%", Boxed, false),
    ("\\boxed{100}", "1", "100", Boxed, false),
    // Units, degrees, money.
    ("\\boxed{5\\text{ cm}}", "5", "5\\text{ cm}", Boxed, true),
    ("\\boxed{12 \\mbox{ cm}^2}", "12", "12 \\mbox{ cm}^2", Boxed, true),
    ("\\boxed{4\\text{ m}}", "4", "4\\text{ m}", Boxed, true),
    ("The answer is 5 dollars.", "5", "5 dollars", AnswerIs, true),
    ("The answer is $18.", "18", "$18", AnswerIs, true),
    ("\\boxed{\\$18.00}", "18", "\\$18.00", Boxed, true),
    ("\\boxed{30^\\circ}", "30", "30^\\circ", Boxed, true),
    ("\\boxed{90}", "90^\\circ", "90", Boxed, true),
    ("\\boxed{30^{\\circ}}", "60^\\circ", "30^{\\circ}", Boxed, false),
    // Assignments, mixed numbers, decimals, thousands, lists.
    ("Solving, \\boxed{x = 5}", "5", "x = 5", Boxed, true),
    ("\\boxed{5}", "x=5", "5", Boxed, true),
    ("\\boxed{a=\\frac{6}{7}}", "$a=\\frac{6}{7}$", "a=\\frac{6}{7}", Boxed, true),
    ("\\boxed{10-4 n}", "$10-4 n$", "10-4 n", Boxed, true),
    ("\\boxed{10-4}", "$10-4 n$", "10-4", Boxed, false),
    ("\\boxed{2\\frac{1}{2}}", "2.5", "2\\frac{1}{2}", Boxed, true),
    ("The answer is 2 1/2 cups.", "\\frac{5}{2}", "2 1/2 cups", AnswerIs, true),
    ("\\boxed{27}", "27.0", "27", Boxed, true),
    ("\\boxed{25}", "025", "25", Boxed, true),
    ("\\boxed{10,000}", "10000", "10,000", Boxed, true),
    ("\\boxed{1, 2}", "1,-2", "1, 2", Boxed, false),
    ("\\boxed{1,-2}", "1, -2", "1,-2", Boxed, true),
    ("\\boxed{3, 5, 7}", "3,5,7", "3, 5, 7", Boxed, true),
    ("\\boxed{0.3333}", "\\frac{1}{3}", "0.3333", Boxed, true),
    ("\\boxed{0.33}", "\\frac{1}{3}", "0.33", Boxed, false),
    ("\\boxed{x^5 - x^4 + x^3 - x^2 + x - 1}", "x^5 - x^4 + x^3 - x^2 + x - 1",
     "x^5 - x^4 + x^3 - x^2 + x - 1", Boxed, true),
    ("\\boxed{(C)}", "\\text{(C)}", "(C)", Boxed, true),
    ("\\boxed{\\text{m}}", "\\text{m}", "\\text{m}", Boxed, true),
    ("\\boxed{\\text{m}}", "n", "\\text{m}", Boxed, false),
];

#[test]
fn table_of_outputs() {
    assert!(CASES.len() >= 40);
    let mut failures = Vec::new();
    for &(output, reference, want_extracted, want_how, want_correct) in CASES {
        let g = grade(output, reference);
        if g.extracted.as_deref() != Some(want_extracted)
            || g.extraction != want_how
            || g.correct != want_correct
        {
            failures.push(format!(
                "{output:?} vs {reference:?}: got {g:?} (normalised {:?} vs {:?}), want \
                 {want_extracted:?} by {want_how:?}, correct={want_correct}",
                normalize(g.extracted.as_deref().unwrap_or("")),
                normalize(&g.reference),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn empty_and_answerless_outputs_are_incorrect() {
    for output in ["", "   ", "I don't know.", "\\boxed{", "\\boxed{}"] {
        let g = grade(output, "42");
        assert_eq!(g.extracted, None, "{output:?}");
        assert_eq!(g.extraction, Extraction::None);
        assert!(!g.correct);
    }
    assert!(!is_equivalent("", ""));
    assert!(!is_equivalent("5", ""));
    assert!(!is_equivalent("", "5"));
}

#[test]
fn normalisation_examples() {
    for (raw, want) in [
        ("$1,000$", "1000"),
        ("\\left( 1,2 \\right)", "(1,2)"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\tfrac12", "\\frac{1}{2}"),
        ("5\\text{ cm}", "5"),
        ("30^{\\circ}", "30"),
        ("x = 5.", "5"),
        ("27.00", "27"),
        ("-0.50", "-0.5"),
        ("3/4", "\\frac{3}{4}"),
        ("1\\,000", "1000"),
        ("\\text{all real numbers}", "allrealnumbers"),
        ("\\boxed{7}", "7"),
    ] {
        assert_eq!(normalize(raw), want, "{raw:?}");
    }
}

#[test]
fn reference_answers_of_each_dataset_shape() {
    assert_eq!(reference_answer("2+1=<<2+1=3>>3 bolts\n#### 3"), "3");
    assert_eq!(
        reference_answer("so $x = \\boxed{\\frac{1}{2}}$."),
        "\\frac{1}{2}"
    );
    assert_eq!(
        reference_answer("  \\left( 3, \\frac{\\pi}{2} \\right) "),
        "\\left( 3, \\frac{\\pi}{2} \\right)"
    );
    assert_eq!(reference_answer("$10-4 n$"), "$10-4 n$");
    assert_eq!(extract_answer("no digits here").1, Extraction::None);
}

fn data_rows(set: &str, n: usize) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(set)
        .join("test.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .take(n)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

fn field<'a>(row: &'a Value, name: &str) -> &'a str {
    row[name]
        .as_str()
        .unwrap_or_else(|| panic!("field {name} missing in {row}"))
}

/// Share of rows whose solution text grades correct against the reference field; prints misses.
fn self_grade(set: &str, solution: &str, answer: &str, n: usize) -> f64 {
    let rows = data_rows(set, n);
    assert_eq!(rows.len(), n);
    let mut correct = 0;
    for row in &rows {
        let g = grade(field(row, solution), field(row, answer));
        if g.correct {
            correct += 1;
        } else {
            eprintln!(
                "{set} miss: extracted {:?} vs reference {:?}",
                g.extracted, g.reference
            );
        }
    }
    let rate = f64::from(correct) / n as f64;
    eprintln!("{set}: {correct}/{n} = {rate:.3}");
    rate
}

#[test]
fn gsm8k_solutions_grade_correct_against_their_answers() {
    // The worked solution itself ends in `#### n`, so every one must pass.
    // Measured: 50/50 (and 1319/1319 over the whole file).
    assert_eq!(self_grade("gsm8k", "answer", "answer", 50), 1.0);
    // And the `####` line alone as the model output, against the full solution.
    for row in data_rows("gsm8k", 50) {
        let answer = field(&row, "answer");
        let n = reference_answer(answer);
        assert!(grade(&format!("The answer is {n}."), answer).correct, "{n}");
        assert!(
            !grade(&format!("The answer is {n}1."), answer).correct,
            "{n}1"
        );
    }
}

#[test]
fn math500_solutions_grade_correct_against_their_answers() {
    // Measured: 50/50 of the first 50 rows (and 500/500 over the whole file).
    let rate = self_grade("math500", "solution", "answer", 50);
    assert!(rate >= 0.9, "math500 self-grading rate {rate}");
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn hostile_input_never_panics() {
    let mut inputs: Vec<String> = [
        "\\boxed{",
        "\\boxed{{{{",
        "}}}}\\boxed}",
        "\\boxed{\\}",
        "\\boxed\\",
        "\\fbox",
        "\\boxed ",
        "####",
        "#### ",
        "answer is",
        "The answer is",
        "the answer is .",
        "$",
        "\\",
        "\\frac",
        "\\frac{",
        "\\sqrt[",
        "\\text{",
        "\\text{\\text{",
        "1,",
        ",1",
        "1,,000",
        "-",
        "--1",
        ".",
        "1/0",
        "0/0",
        "\\frac{1}{0}",
        "2^{99999}",
        "10^{-99999}",
        "(-8)^{1/3}",
        "\\sqrt{-4}",
        "x = ",
        "= 5",
        "é\\boxed{ü}",
        "答案是 \\boxed{四十二}",
        "🙂🙂 1,234 🙂",
        "The answer is ½.",
        "\u{0}\u{ffff}",
        "2 1/0",
        "\\boxed{2\\frac{1}{0}}",
        "(",
        ")",
        "\\{1,2",
        "(1,2]",
        "\\left(",
        "\\right",
        "°",
        "%%%%",
        "\\%",
        "^\\circ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    inputs.push("9".repeat(5000));
    inputs.push(format!("\\boxed{{{}}}", "9".repeat(400)));
    inputs.push("{".repeat(20_000));
    inputs.push("(".repeat(20_000) + "1" + &")".repeat(20_000));
    inputs.push("-".repeat(20_000) + "1");
    inputs.push("\\boxed{".repeat(2_000));
    inputs.push("\\text{".repeat(500) + "cm");
    inputs.push("1,".repeat(5_000));
    // Pseudo-random strings over an alphabet of LaTeX fragments and multibyte characters.
    let alphabet = [
        "\\boxed{",
        "}",
        "{",
        "\\frac",
        "\\sqrt",
        "1",
        "2",
        ",",
        ".",
        "-",
        "/",
        "^",
        "(",
        ")",
        " ",
        "é",
        "答",
        "🙂",
        "$",
        "\\",
        "####",
        "answer is",
        "\\text{",
        "%",
        "x=",
        "\n",
        "\\left",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..3000 {
        let mut s = String::new();
        for _ in 0..(state % 40) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            s.push_str(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        inputs.push(s);
    }
    for (i, a) in inputs.iter().enumerate() {
        let b = &inputs[(i * 7 + 3) % inputs.len()];
        let _ = grade(a, b);
        let _ = grade(b, a);
        let _ = normalize(a);
        let _ = is_equivalent(a, a);
        let _ = reference_answer(a);
    }
}
