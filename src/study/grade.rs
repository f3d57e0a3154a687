//! Grading a model's answer to a math question (method.md §4 step 3).
//!
//! Three steps: [`extract_answer`] finds the final answer in the model output (the last
//! `\boxed{…}`, else "the answer is …", else GSM8K's `#### n`, else the last number);
//! [`normalize`] strips the notation that does not change an answer (`$`, spaces, `\left`,
//! units, thousands separators, …); [`is_equivalent`] compares the normalised strings and, where
//! both sides are numbers or simple LaTeX expressions, their values. [`grade`] runs all three
//! against a raw dataset reference ([`reference_answer`]).
//!
//! Everything here is total: any input, however malformed (unbalanced braces, multibyte text,
//! thousand-digit numbers), gives an answer and never panics.

use super::latex_eval;
use serde::{Deserialize, Serialize};

/// Relative tolerance of numeric equality.
const REL_TOL: f64 = 1e-4;

/// Commands whose braced argument is text: `\text{ cm}` → ` cm `.
const TEXT_COMMANDS: &[&str] = &[
    "\\text", "\\textbf", "\\textit", "\\textrm", "\\mbox", "\\mathrm", "\\mathbf", "\\rm",
];

/// Unit words dropped after a number (compared lowercase, with a trailing `.`, `^2`, `^3` cut).
/// Single letters (`m`, `s`, `g`) count only inside `\text{…}`, where they cannot be variables.
const UNITS: &str =
    "cm mm km in inch inches ft foot feet yd yard yards mi mile miles meter meters \
    metre metres centimeter centimeters millimeter millimeters kilometer kilometers dollar dollars \
    cent cents euro euros degree degrees deg radian radians percent unit units square sq cubic \
    hour hours hr hrs minute minutes min mins second seconds sec day days week weeks month months \
    year years kg gram grams kilogram kilograms lb lbs pound pounds oz ounce ounces liter liters \
    litre litres ml gallon gallons mph km/h m/s";

/// Unit symbols that are units only inside `\text{…}`.
const TEXT_ONLY_UNITS: &[&str] = &["m", "s", "g", "l", "h"];

/// Powers written after a unit: `cm^2`.
const UNIT_POWERS: &[&str] = &["^2", "^3", "^{2}", "^{3}", "\u{b2}", "\u{b3}"];

/// How the final answer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Extraction {
    /// The last non-empty `\boxed{…}` or `\fbox{…}` (or `\boxed 5`).
    Boxed,
    /// The text after the last "answer is" up to the end of its sentence or line.
    AnswerIs,
    /// The text after the last `####` on its line (GSM8K's format).
    Gsm8k,
    /// The last number in the text.
    LastNumber,
    /// Nothing answer-like was found.
    None,
}

/// Full grading of a model output against a raw dataset reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    /// The final answer found in the output, as written there.
    pub extracted: Option<String>,
    /// How [`Grade::extracted`] was found.
    pub extraction: Extraction,
    /// The reference answer, as returned by [`reference_answer`].
    pub reference: String,
    /// Whether the extracted answer [`is_equivalent`] to the reference.
    pub correct: bool,
}

/// Grades `output` against the raw dataset reference `reference_raw` (a bare answer, a GSM8K
/// worked solution ending in `#### n`, or a solution containing `\boxed{}`).
pub fn grade(output: &str, reference_raw: &str) -> Grade {
    let reference = reference_answer(reference_raw);
    let (extracted, extraction) = extract_answer(output);
    let correct = extracted
        .as_deref()
        .is_some_and(|e| is_equivalent(e, &reference));
    Grade {
        extracted,
        extraction,
        reference,
        correct,
    }
}

/// Extracts the final answer from a model output: the last `\boxed{…}` (brace-matched, nested
/// braces ok, also `\fbox{}` and `\boxed ` followed by a token), else "the answer is …"
/// (case-insensitive, up to the end of the sentence or line), else GSM8K `#### n`, else the last
/// number in the text. Empty candidates are skipped.
pub fn extract_answer(text: &str) -> (Option<String>, Extraction) {
    if let Some(a) = last_boxed(text) {
        return (Some(a), Extraction::Boxed);
    }
    if let Some(a) = answer_is(text) {
        return (Some(a), Extraction::AnswerIs);
    }
    if let Some(a) = after_hashes(text) {
        return (Some(a), Extraction::Gsm8k);
    }
    match last_number(text) {
        Some(a) => (Some(a), Extraction::LastNumber),
        None => (None, Extraction::None),
    }
}

/// The reference answer of a dataset row: for a GSM8K-style worked solution the part after the
/// last `####`; else the content of the last `\boxed{}` inside a solution; otherwise the trimmed
/// string itself.
pub fn reference_answer(raw: &str) -> String {
    if let Some(a) = after_hashes(raw) {
        return a;
    }
    if let Some(a) = last_boxed(raw) {
        return a;
    }
    raw.trim().to_string()
}

/// Normalises an answer for comparison: strips `$`, spaces, `\left`/`\right`, `\!`, `\,`,
/// `\text{…}`/`\mbox{…}` wrappers, unit words after numbers (cm, dollars, degrees, …), trailing
/// `.0`/`.00`, `^\circ`, `%`, a trailing period and a leading single-variable assignment
/// (`x = 5` → `5`); rewrites `\dfrac`/`\tfrac` as `\frac`, `\frac12` as `\frac{1}{2}`, `a/b` as
/// `\frac{a}{b}`, a mixed number `2 1/2` as `2\frac{1}{2}`, and `1,000` as `1000`.
pub fn normalize(s: &str) -> String {
    let mut s = s.trim().to_string();
    if let Some(inner) = whole_boxed(&s) {
        s = inner;
    }
    s = s.replace("\\$", "").replace('$', "");
    s = replace_cmd(&s, "\\dfrac", "\\frac");
    s = replace_cmd(&s, "\\tfrac", "\\frac");
    for cmd in ["\\displaystyle", "\\left", "\\right", "\\degree"] {
        s = replace_cmd(&s, cmd, "");
    }
    for cmd in ["\\quad", "\\qquad"] {
        s = replace_cmd(&s, cmd, " ");
    }
    for (from, to) in [
        ("{,}", ","),
        ("\\(", ""),
        ("\\)", ""),
        ("\\[", ""),
        ("\\]", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", " "),
        ("\\:", " "),
        ("\\ ", " "),
        ("~", " "),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\u{b0}", ""),
        ("\\%", ""),
        ("%", ""),
    ] {
        s = s.replace(from, to);
    }
    s = unwrap_text(&s);
    s = strip_units(&s);
    let s = s.trim().trim_end_matches(['.', ' ']).trim();
    let s = strip_assignment(s);
    let s = strip_thousands(s);
    let s = mixed_to_latex(&s).unwrap_or(s);
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let s = brace_shorthand(&brace_shorthand(&s, "\\frac", 2), "\\sqrt", 1);
    let s = slash_to_frac(&s).unwrap_or(s);
    let s = canonical_number(&s).unwrap_or(s);
    match s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        Some(letter) if letter.len() == 1 && letter.chars().all(|c| c.is_ascii_uppercase()) => {
            letter.to_string()
        }
        _ => s,
    }
}

/// Whether `prediction` and `reference` are the same answer: their [`normalize`]d forms are
/// equal (case-insensitively for words), or both evaluate to numbers equal within relative
/// 1e-4 (fractions, `\sqrt{}`, `\pi`, mixed numbers included), or they are tuples/lists with the
/// same brackets whose elements are pairwise equivalent. When either side carries a percent
/// sign (`%`, `\%`, "percent"), reference×100 and reference/100 also count.
pub fn is_equivalent(prediction: &str, reference: &str) -> bool {
    let percent = has_percent(prediction) || has_percent(reference);
    equivalent_normalized(&normalize(prediction), &normalize(reference), percent)
}

fn equivalent_normalized(p: &str, r: &str, percent: bool) -> bool {
    if p.is_empty() || r.is_empty() {
        return false;
    }
    if p == r || (p.eq_ignore_ascii_case(r) && p.chars().all(char::is_alphabetic)) {
        return true;
    }
    if let (Some(a), Some(b)) = (value(p), value(r)) {
        return close(a, b) || (percent && (close(a, b * 100.0) || close(a, b / 100.0)));
    }
    match (split_list(p), split_list(r)) {
        (Some((po, pp, pc)), Some((ro, rp, rc))) => {
            po == ro
                && pc == rc
                && pp.len() == rp.len()
                && pp
                    .iter()
                    .zip(&rp)
                    .all(|(a, b)| equivalent_normalized(a, b, percent))
        }
        _ => false,
    }
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= REL_TOL * a.abs().max(b.abs())
}

fn has_percent(s: &str) -> bool {
    s.contains('%') || s.to_ascii_lowercase().contains("percent")
}

/// The value of a normalised answer: a mixed number `2\frac{1}{2}`, else [`latex_eval::eval`].
fn value(s: &str) -> Option<f64> {
    mixed_value(s).or_else(|| latex_eval::eval(s))
}

// ---------------------------------------------------------------------------------------------
// Extraction

/// Byte index of the `}` matching the `{` at byte `open`, skipping escaped `\{`, `\}`, `\\`.
fn matching_brace(s: &str, open: usize) -> Option<usize> {
    let b = s.as_bytes();
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'\\' if matches!(b.get(i + 1), Some(b'{' | b'}' | b'\\')) => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The argument of the box command ending at byte `end`: `{…}` or, after a space, one token.
fn box_argument(text: &str, end: usize) -> Option<String> {
    let rest = text.get(end..)?;
    let trimmed = rest.trim_start();
    let skipped = rest.len() - trimmed.len();
    if trimmed.starts_with('{') {
        let open = end + skipped;
        let close = matching_brace(text, open)?;
        return text.get(open + 1..close).map(|a| a.trim().to_string());
    }
    if skipped == 0 {
        return None; // `\boxedx`: another command, or nothing.
    }
    let token: String = trimmed
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '$')
        .collect();
    Some(token.trim_end_matches(['.', ',']).to_string())
}

/// The content of the last non-empty `\boxed{…}` / `\fbox{…}` in `text`.
fn last_boxed(text: &str) -> Option<String> {
    let mut starts: Vec<(usize, usize)> = Vec::new();
    for cmd in ["\\boxed", "\\fbox"] {
        starts.extend(text.match_indices(cmd).map(|(i, m)| (i, i + m.len())));
    }
    starts.sort_unstable();
    starts
        .iter()
        .rev()
        .filter_map(|&(_, end)| box_argument(text, end))
        .find(|a| !a.is_empty())
}

/// `s` is exactly `\boxed{…}`: its content.
fn whole_boxed(s: &str) -> Option<String> {
    let end = "\\boxed".len();
    if !s.starts_with("\\boxed{") || matching_brace(s, end)? != s.len() - 1 {
        return None;
    }
    s.get(end + 1..s.len() - 1).map(str::to_string)
}

/// Words that follow "answer is" in a remark rather than an answer ("the answer is correct").
const NOT_ANSWERS: &str = "correct right wrong incorrect not indeed consistent reasonable valid \
    plausible likely probably as that the to in a an";

/// The text after the last "answer is" that starts an answer, up to the end of its sentence or
/// line.
fn answer_is(text: &str) -> Option<String> {
    // ASCII lowercasing keeps every byte offset valid in `text`.
    let key = "answer is";
    let lower = text.to_ascii_lowercase();
    let mut found: Vec<usize> = lower
        .match_indices(key)
        .map(|(i, _)| i + key.len())
        .collect();
    found.reverse();
    found.into_iter().find_map(|start| {
        let rest = text
            .get(start..)?
            .trim_start_matches(|c: char| c.is_whitespace() || c == ':');
        let mut chars = rest.char_indices().peekable();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            let next = chars.peek().map(|&(_, n)| n);
            let sentence_end = matches!(c, '.' | '!' | '?') && next.is_none_or(char::is_whitespace);
            if c == '\n' || sentence_end {
                end = i;
                break;
            }
        }
        let answer = rest
            .get(..end)?
            .trim()
            .trim_end_matches([',', ';', ':'])
            .trim();
        let first = answer
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let first = first.trim_end_matches([',', '.', ':']);
        (!answer.is_empty() && !NOT_ANSWERS.split_whitespace().any(|w| w == first))
            .then(|| answer.to_string())
    })
}

/// The rest of the line after the last `####`.
fn after_hashes(text: &str) -> Option<String> {
    let start = text.rfind("####")?;
    let rest = text.get(start..)?.trim_start_matches('#');
    let line = rest.lines().next().unwrap_or("").trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// The last number in `text`: optional sign, digits with `,` thousands groups, a decimal part,
/// or a simple fraction `a/b`.
fn last_number(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let digit = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    let mut last = None;
    let mut i = 0;
    while i < chars.len() {
        if !digit(i) {
            i += 1;
            continue;
        }
        let mut start = i;
        if i > 0 && chars[i - 1] == '-' && (i < 2 || !chars[i - 2].is_alphanumeric()) {
            start = i - 1;
        }
        let mut j = i;
        loop {
            while digit(j) {
                j += 1;
            }
            let group = (1..=3).all(|k| digit(j + k)) && !digit(j + 4);
            let separator = (chars.get(j) == Some(&',') && group)
                || (matches!(chars.get(j), Some('.' | '/')) && digit(j + 1));
            if separator {
                j += 1;
            } else {
                break;
            }
        }
        last = Some(chars[start..j].iter().collect::<String>());
        i = j;
    }
    last
}

// ---------------------------------------------------------------------------------------------
// Normalisation helpers

/// Replaces the command `cmd` (like `\left`) where no letter follows it.
fn replace_cmd(s: &str, cmd: &str, with: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(cmd) {
        let after = &rest[i + cmd.len()..];
        out.push_str(&rest[..i]);
        if after.starts_with(|c: char| c.is_ascii_alphabetic()) {
            out.push_str(cmd);
        } else {
            out.push_str(with);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `\text{Evelyn}` → ` Evelyn`, for every command of [`TEXT_COMMANDS`]; a wrapped unit after a
/// number (`5\text{ cm}^2`) is dropped; an unbalanced command loses its name and brace.
fn unwrap_text(s: &str) -> String {
    let mut s = s.to_string();
    // Every round removes one command, so this ends.
    loop {
        let found = TEXT_COMMANDS
            .iter()
            .filter_map(|cmd| {
                let mut from = 0;
                while let Some(i) = s.get(from..).and_then(|r| r.find(cmd)) {
                    let end = from + i + cmd.len();
                    if s[end..].starts_with('{') {
                        return Some((from + i, end));
                    }
                    from = end;
                }
                None
            })
            .min();
        let Some((start, open)) = found else { return s };
        s = match matching_brace(&s, open) {
            Some(close) => {
                let content = &s[open + 1..close];
                let mut after = &s[close + 1..];
                let after_number = s[..start]
                    .trim_end()
                    .ends_with(|c: char| c.is_ascii_digit() || c == '}');
                let unit = after_number
                    && content.split_whitespace().count() > 0
                    && content
                        .split_whitespace()
                        .all(|w| is_unit(w) || TEXT_ONLY_UNITS.contains(&w.trim_end_matches('.')));
                if unit {
                    let power = UNIT_POWERS.iter().find(|p| after.starts_with(*p));
                    after = power.map_or(after, |p| &after[p.len()..]);
                    format!("{} {}", &s[..start], after)
                } else {
                    format!("{} {}{}", &s[..start], content, after)
                }
            }
            None => format!("{} {}", &s[..start], &s[open + 1..]),
        };
    }
}

fn is_unit(token: &str) -> bool {
    let t = token.to_ascii_lowercase();
    let mut t = t.trim_end_matches('.');
    for power in UNIT_POWERS {
        t = t.strip_suffix(power).unwrap_or(t);
    }
    UNITS.split_whitespace().any(|u| u == t)
}

/// A word of two or more ASCII letters (and an optional final `.`): `eggs`, `cups.`.
fn is_word(token: &str) -> bool {
    let t = token.trim_end_matches('.');
    t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphabetic())
}

/// Only digits, operators, brackets and `\frac`/`\sqrt`/`\pi`/`\cdot`/`\times`.
fn is_numeric_expression(s: &str) -> bool {
    let mut t = s.to_string();
    for cmd in ["\\frac", "\\sqrt", "\\pi", "\\cdot", "\\times"] {
        t = t.replace(cmd, "");
    }
    t.chars().any(|c| c.is_ascii_digit())
        && t.chars()
            .all(|c| c.is_ascii_digit() || c.is_whitespace() || ".,/-+*^{}()[]".contains(c))
}

/// Drops unit words and other words after a number: `5 cm^2` → `5`, `\frac{1}{2} inches` →
/// `\frac{1}{2}`, `2 1/2 cups` → `2 1/2`. Single letters stay (`10-4 n` is an expression).
fn strip_units(s: &str) -> String {
    let tokens: Vec<&str> = s.split_whitespace().collect();
    let mut n = tokens.len();
    while n > 1 && (is_unit(tokens[n - 1]) || is_word(tokens[n - 1])) {
        n -= 1;
    }
    let kept = tokens[..n].join(" ");
    if n < tokens.len() && is_numeric_expression(&kept) {
        kept
    } else {
        tokens.join(" ")
    }
}

/// `x = 5` → `5` (a single Latin letter assigned once).
fn strip_assignment(s: &str) -> &str {
    let mut chars = s.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return s;
    }
    let rest = chars.as_str().trim_start();
    match rest.strip_prefix('=') {
        Some(value) if !value.contains('=') && !value.trim().is_empty() => value.trim(),
        _ => s,
    }
}

/// Removes thousands separators: `1,000` → `1000`, `12,345,678.5` → `12345678.5`. Only runs of
/// the exact form `d{1,3}(,ddd)+` count, so `1,2`, `3,5,7` and `1, 000` stay as they are.
fn strip_thousands(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < c.len() {
        let starts_run = c[i].is_ascii_digit()
            && (i == 0 || !(c[i - 1].is_ascii_digit() || matches!(c[i - 1], '.' | ',')));
        if !starts_run {
            out.push(c[i]);
            i += 1;
            continue;
        }
        let mut j = i;
        while j < c.len() && (c[j].is_ascii_digit() || c[j] == ',') {
            j += 1;
        }
        let run: String = c[i..j].iter().collect();
        let number = run.trim_end_matches(',');
        let groups: Vec<&str> = number.split(',').collect();
        let grouped = groups.len() > 1
            && (1..=3).contains(&groups[0].len())
            && groups[1..].iter().all(|g| g.len() == 3);
        if grouped {
            out.extend(number.chars().filter(|&ch| ch != ','));
            out.push_str(&run[number.len()..]);
        } else {
            out.push_str(&run);
        }
        i = j;
    }
    out
}

/// `2 1/2` → `2\frac{1}{2}` (the whole string a mixed number).
fn mixed_to_latex(s: &str) -> Option<String> {
    let (whole, frac) = s.trim().split_once(' ')?;
    let (n, d) = frac.trim().split_once('/')?;
    let digits = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
    let w = whole.strip_prefix('-').unwrap_or(whole);
    (digits(w) && digits(n) && digits(d)).then(|| format!("{whole}\\frac{{{n}}}{{{d}}}"))
}

/// The value of a mixed number `-2\frac{1}{2}` (= -2.5).
fn mixed_value(s: &str) -> Option<f64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (whole, rest) = s.split_once("\\frac{")?;
    let (n, rest) = rest.split_once("}{")?;
    let d = rest.strip_suffix('}')?;
    let digits = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
    if !(digits(whole) && digits(n) && digits(d)) {
        return None;
    }
    let (w, n, d) = (
        whole.parse::<f64>().ok()?,
        n.parse::<f64>().ok()?,
        d.parse::<f64>().ok()?,
    );
    let v = if d == 0.0 { return None } else { w + n / d };
    v.is_finite().then_some(if neg { -v } else { v })
}

/// `\frac12` → `\frac{1}{2}`, `\sqrt2` → `\sqrt{2}`: wraps `args` unbraced single characters.
fn brace_shorthand(s: &str, cmd: &str, args: usize) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(cmd) {
        out.push_str(&rest[..i + cmd.len()]);
        rest = &rest[i + cmd.len()..];
        for _ in 0..args {
            let mut it = rest.chars();
            match it.next() {
                Some(c) if c.is_ascii_alphanumeric() => {
                    out.push('{');
                    out.push(c);
                    out.push('}');
                    rest = it.as_str();
                }
                _ => break,
            }
        }
    }
    out.push_str(rest);
    out
}

/// `3/4` → `\frac{3}{4}`, `-3/4` → `-\frac{3}{4}` (the whole string a simple fraction).
fn slash_to_frac(s: &str) -> Option<String> {
    let (sign, body) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (n, d) = body.split_once('/')?;
    let ok = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
    (ok(n) && ok(d)).then(|| format!("{sign}\\frac{{{n}}}{{{d}}}"))
}

/// A plain decimal in canonical form: `+5` → `5`, `.5` → `0.5`, `27.0` → `27`, `-0` → `0`.
fn canonical_number(s: &str) -> Option<String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    if !digits(int) || !digits(frac) || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.trim_end_matches('0');
    let mut out = String::from(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if neg && out != "0" {
        out.insert(0, '-');
    }
    Some(out)
}

/// A tuple, interval, set or bare list: (opening bracket, top-level elements, closing bracket).
fn split_list(s: &str) -> Option<(&str, Vec<&str>, &str)> {
    let mut best = ("", s, "");
    for (open, close) in [
        ("(", ")"),
        ("[", "]"),
        ("\\{", "\\}"),
        ("(", "]"),
        ("[", ")"),
    ] {
        if let Some(inner) = s.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
            best = (open, inner, close);
            break;
        }
    }
    let (open, inner, close) = best;
    let mut parts = Vec::new();
    let mut depth = 0i64;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    (parts.len() > 1).then_some((open, parts, close))
}
