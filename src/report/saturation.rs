//! Saturation (method.md §7): EAP's gradient vanishes as a model's probability of its own
//! answer tokens approaches 1, so the scores of a sample whose loss is tiny say more about the
//! model's confidence than about its circuits. Each comparison records both models' per-sample
//! losses in brief and the share of saturated samples, and warns when that share is large.

use super::run::Run;
use super::table::Cell;
use serde::{Deserialize, Serialize};

/// Loss per answer token (nats) below which a sample counts as saturated.
pub const THRESHOLD: f64 = 1e-3;

/// Share of a model's samples, saturated, from which a comparison warns.
pub const WARN_SHARE: f64 = 0.1;

/// One model's per-sample losses in brief.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Losses {
    /// Samples scored.
    pub n: usize,
    /// Median loss per answer token (nats).
    pub median: f64,
    /// Samples whose loss is below the threshold.
    pub saturated: usize,
}

impl Losses {
    /// The losses of `values`, saturated below `threshold` (non-finite losses are left out).
    pub fn of(values: impl IntoIterator<Item = f64>, threshold: f64) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|l| l.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let median = match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Self {
            n: v.len(),
            median,
            saturated: v.iter().filter(|&&l| l < threshold).count(),
        }
    }

    /// The saturated share of the samples (0 without samples).
    pub fn share(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.saturated as f64 / self.n as f64
        }
    }
}

/// Both models' losses and the threshold they were judged by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Saturation {
    pub threshold: f64,
    pub base: Losses,
    pub tuned: Losses,
}

impl Saturation {
    /// The saturation of two runs' samples, at [`THRESHOLD`].
    pub fn of(base: &Run, tuned: &Run) -> Self {
        let losses = |r: &Run| Losses::of(r.metrics.samples.iter().map(|s| s.loss), THRESHOLD);
        Self {
            threshold: THRESHOLD,
            base: losses(base),
            tuned: losses(tuned),
        }
    }

    /// One line for tables and status lines.
    pub fn line(&self) -> String {
        let value = |v: f64| Cell::Value(v).text();
        format!(
            "Median loss per answer token: base {}, tuned {} nats; saturated (below {:.0e}): \
             base {:.0} %, tuned {:.0} %",
            value(self.base.median),
            value(self.tuned.median),
            self.threshold,
            100.0 * self.base.share(),
            100.0 * self.tuned.share()
        )
    }

    /// A warning when at least [`WARN_SHARE`] of either model's samples are saturated.
    pub fn warning(&self) -> Option<String> {
        let (b, t) = (self.base.share(), self.tuned.share());
        (b.max(t) >= WARN_SHARE).then(|| {
            format!(
                "{:.0} % of the base model's samples and {:.0} % of the tuned model's have a \
                 loss below {:.0e} nats per answer token: EAP's gradients are near zero there, \
                 so their scores say more about the models' confidence than about their \
                 circuits; a harder task, a larger K or a larger α moves the samples out of \
                 saturation",
                100.0 * b,
                100.0 * t,
                self.threshold
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_count_the_saturated_and_take_the_median() {
        let l = Losses::of([5e-4, 2e-3, f64::NAN, 1e-4, 3.0], THRESHOLD);
        assert_eq!((l.n, l.saturated), (4, 2));
        assert!((l.median - (5e-4 + 2e-3) / 2.0).abs() < 1e-15);
        assert!((l.share() - 0.5).abs() < 1e-15);
        let empty = Losses::of([], THRESHOLD);
        assert_eq!((empty.n, empty.share()), (0, 0.0));
    }

    #[test]
    fn a_warning_from_one_saturated_sample_in_ten() {
        let of = |saturated: usize| Saturation {
            threshold: THRESHOLD,
            base: Losses {
                n: 10,
                median: 1.0,
                saturated: 0,
            },
            tuned: Losses {
                n: 10,
                median: 1.0,
                saturated,
            },
        };
        assert!(of(0).warning().is_none());
        let w = of(1).warning().unwrap();
        assert!(
            w.starts_with("0 % of the base model's samples and 10 % of the tuned"),
            "{w}"
        );
        assert!(of(0)
            .line()
            .contains("saturated (below 1e-3): base 0 %, tuned 0 %"));
    }
}
