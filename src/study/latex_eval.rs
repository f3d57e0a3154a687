//! A small numeric evaluator for simple LaTeX and plain-text math expressions, used by the
//! answer grader ([`super::grade`]) to decide that two differently written answers have the same
//! value (`\frac{3}{4}` and `0.75`, `2\sqrt{3}` and `\sqrt{12}`).
//!
//! Grammar (whitespace is ignored):
//!
//! ```text
//! expr   := term (('+' | '-') term)*
//! term   := unary (('*' | '/' | '\cdot' | '\times' | '\div' | <implicit>) unary)*
//! unary  := ('-' | '+') unary | power
//! power  := atom ('^' ('-' power | power | digits))   (`2^10` is read as 1024)
//! atom   := number | '(' expr ')' | '{' expr '}' | '[' expr ']' | '\frac' arg arg
//!         | '\sqrt' ('[' expr ']')? arg | '\pi'
//! arg    := '{' expr '}' | a single digit       (so `\frac12` and `\sqrt2` work)
//! ```
//!
//! Anything else (letters, commas, `\infty`, unknown commands) makes the whole expression
//! unevaluable: [`eval`] returns `None`. So does a non-finite result, a negative square root,
//! nesting deeper than [`MAX_DEPTH`] or input longer than [`MAX_LEN`] characters. It never
//! panics.

/// Deepest nesting of parentheses, braces and unary signs the parser follows.
const MAX_DEPTH: usize = 64;
/// Longest input (in characters) that is evaluated at all.
const MAX_LEN: usize = 2000;
/// Largest integer exponent magnitude accepted by `^`.
const MAX_EXPONENT: f64 = 1000.0;

/// The value of a simple expression, or `None` when it is not one (see the module docs).
pub(crate) fn eval(s: &str) -> Option<f64> {
    let chars: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if chars.is_empty() || chars.len() > MAX_LEN {
        return None;
    }
    let mut p = Parser {
        chars,
        pos: 0,
        depth: 0,
    };
    let v = p.expr()?;
    if p.pos != p.chars.len() || !v.is_finite() {
        return None;
    }
    Some(v)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// Whether the input continues with `lit` (not followed by a letter, for commands).
    fn at(&self, lit: &str) -> bool {
        let mut i = self.pos;
        for c in lit.chars() {
            if self.chars.get(i) != Some(&c) {
                return false;
            }
            i += 1;
        }
        !(lit.starts_with('\\') && self.chars.get(i).is_some_and(|c| c.is_ascii_alphabetic()))
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.at(lit) {
            self.pos += lit.chars().count();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn expr(&mut self) -> Option<f64> {
        self.enter()?;
        let mut v = self.term()?;
        loop {
            if self.eat("+") {
                v += self.term()?;
            } else if self.eat("-") {
                v -= self.term()?;
            } else {
                break;
            }
        }
        self.depth -= 1;
        Some(v)
    }

    fn term(&mut self) -> Option<f64> {
        let mut v = self.unary()?;
        loop {
            if self.eat("*") || self.eat("\\cdot") || self.eat("\\times") {
                v *= self.unary()?;
            } else if self.eat("/") || self.eat("\\div") {
                let d = self.unary()?;
                if d == 0.0 {
                    return None;
                }
                v /= d;
            } else if self.starts_atom() {
                v *= self.power()?;
            } else {
                break;
            }
        }
        Some(v)
    }

    fn unary(&mut self) -> Option<f64> {
        if self.eat("-") {
            self.enter()?;
            let v = -self.unary()?;
            self.depth -= 1;
            Some(v)
        } else if self.eat("+") {
            self.enter()?;
            let v = self.unary()?;
            self.depth -= 1;
            Some(v)
        } else {
            self.power()
        }
    }

    fn power(&mut self) -> Option<f64> {
        let base = self.atom()?;
        if !self.eat("^") {
            return Some(base);
        }
        self.enter()?;
        let exp = match self.peek() {
            Some(c) if c.is_ascii_digit() => self.number()?,
            Some('-') => {
                self.pos += 1;
                -self.power()?
            }
            _ => self.power()?,
        };
        self.depth -= 1;
        let v = if exp.fract() == 0.0 && exp.abs() <= MAX_EXPONENT {
            // Integer exponent: exact for negative bases too.
            #[allow(clippy::cast_possible_truncation)] // |exp| <= 1000, an integer
            base.powi(exp as i32)
        } else if base > 0.0 {
            base.powf(exp)
        } else {
            return None;
        };
        v.is_finite().then_some(v)
    }

    /// Whether the next token begins an atom (for implicit multiplication: `2\sqrt{3}`, `2(3)`).
    fn starts_atom(&self) -> bool {
        match self.peek() {
            // Not a digit: `1.2.3` or `(2)3` is no product.
            Some('(' | '{') => true,
            Some('\\') => self.at("\\frac") || self.at("\\sqrt") || self.at("\\pi"),
            _ => false,
        }
    }

    fn atom(&mut self) -> Option<f64> {
        match self.peek()? {
            c if c.is_ascii_digit() || c == '.' => self.number(),
            '(' => self.group('(', ')'),
            '{' => self.group('{', '}'),
            '[' => self.group('[', ']'),
            '\\' => {
                if self.eat("\\frac") {
                    let n = self.arg()?;
                    let d = self.arg()?;
                    (d != 0.0).then(|| n / d)
                } else if self.eat("\\sqrt") {
                    let index = if self.peek() == Some('[') {
                        Some(self.group('[', ']')?)
                    } else {
                        None
                    };
                    let x = self.arg()?;
                    match index {
                        None if x >= 0.0 => Some(x.sqrt()),
                        Some(3.0) => Some(x.cbrt()),
                        Some(n) if n > 0.0 && x >= 0.0 => Some(x.powf(1.0 / n)),
                        _ => None,
                    }
                } else if self.eat("\\pi") {
                    Some(std::f64::consts::PI)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// A braced argument, or a single digit (`\frac12`).
    fn arg(&mut self) -> Option<f64> {
        match self.peek()? {
            '{' => self.group('{', '}'),
            c if c.is_ascii_digit() => {
                self.pos += 1;
                c.to_digit(10).map(f64::from)
            }
            _ => None,
        }
    }

    fn group(&mut self, open: char, close: char) -> Option<f64> {
        if self.peek() != Some(open) {
            return None;
        }
        self.pos += 1;
        let v = self.expr()?;
        if self.peek() != Some(close) {
            return None;
        }
        self.pos += 1;
        Some(v)
    }

    fn number(&mut self) -> Option<f64> {
        let start = self.pos;
        let mut dot = false;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.pos += 1;
            } else if c == '.' && !dot {
                dot = true;
                self.pos += 1;
            } else {
                break;
            }
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        if text == "." {
            return None;
        }
        text.parse::<f64>().ok().filter(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::eval;

    fn close(s: &str, want: f64) {
        let got = eval(s);
        assert!(
            got.is_some_and(|g| (g - want).abs() <= 1e-12 * want.abs().max(1.0)),
            "{s:?}: got {got:?}, want {want}"
        );
    }

    #[test]
    fn evaluates_simple_forms() {
        close("42", 42.0);
        close("-0.75", -0.75);
        close("\\frac{3}{4}", 0.75);
        close("\\frac12", 0.5);
        close("-\\frac{\\pi}{6}", -std::f64::consts::PI / 6.0);
        close("3\\sqrt{13}", 3.0 * 13f64.sqrt());
        close("11\\sqrt2", 11.0 * 2f64.sqrt());
        close("\\sqrt[3]{27}", 3.0);
        close("2^{10}", 1024.0);
        close("2^10", 1024.0);
        close("(-2)^3", -8.0);
        close("-2^2", -4.0);
        close("1.09\\times10^{0}", 1.09);
        close("(1+2)(3+4)", 21.0);
        close("\\frac{1+\\sqrt{5}}{2}", (1.0 + 5f64.sqrt()) / 2.0);
        close("6/3*2", 4.0);
    }

    #[test]
    fn rejects_non_numbers() {
        for s in [
            "",
            "x",
            "p-q",
            "1,2",
            "\\infty",
            "1/0",
            "\\sqrt{-1}",
            "(1",
            "1)",
            "{",
            "\\frac{1}",
            "2^{100000}",
            ".",
            "1..2",
            "\\fracx",
            "é",
            "3\\foo",
        ] {
            assert_eq!(eval(s), None, "{s:?}");
        }
        let deep = "(".repeat(10_000) + "1" + &")".repeat(10_000);
        assert_eq!(eval(&deep), None);
        assert_eq!(eval(&"-".repeat(1500)), None);
        assert_eq!(eval(&"9".repeat(400)), None);
    }
}
