//! An error as one line for people: the error and its causes, each said once.

use std::error::Error;

/// `err` and the chain of its sources joined by `: `, leaving out a cause whose text the line
/// already holds (errors that print their source in their own message, as most of this crate's
/// do, would otherwise say it twice).
pub fn chain(err: &(dyn Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("reading {path}: {source}")]
        Repeats {
            path: String,
            source: std::io::Error,
        },
        #[error("reading {path}")]
        Silent {
            path: String,
            source: std::io::Error,
        },
    }

    fn denied() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::PermissionDenied)
    }

    #[test]
    fn each_cause_is_said_once() {
        let repeats = Outer::Repeats {
            path: "a.json".into(),
            source: denied(),
        };
        assert_eq!(chain(&repeats), format!("reading a.json: {}", denied()));
        let silent = Outer::Silent {
            path: "a.json".into(),
            source: denied(),
        };
        assert_eq!(chain(&silent), format!("reading a.json: {}", denied()));
        let wrapped = anyhow::Error::new(repeats).context("study into out");
        assert_eq!(
            chain(wrapped.as_ref()),
            format!("study into out: reading a.json: {}", denied())
        );
    }
}
