//! The two models of a comparison, and a container for what exists once per model.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Index, IndexMut};

/// Which model of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Base,
    Tuned,
}

impl Side {
    /// Both sides, base first.
    pub const BOTH: [Self; 2] = [Self::Base, Self::Tuned];

    /// `base` or `tuned`: the name in file names, reports and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Tuned => "tuned",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value per side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerSide<T> {
    pub base: T,
    pub tuned: T,
}

impl<T> PerSide<T> {
    /// A value for each side, computed base first.
    pub fn from_fn(mut f: impl FnMut(Side) -> T) -> Self {
        let base = f(Side::Base);
        Self {
            base,
            tuned: f(Side::Tuned),
        }
    }

    /// Like [`Self::from_fn`] for a fallible computation; stops at the first error.
    pub fn try_from_fn<E>(mut f: impl FnMut(Side) -> Result<T, E>) -> Result<Self, E> {
        let base = f(Side::Base)?;
        Ok(Self {
            base,
            tuned: f(Side::Tuned)?,
        })
    }

    pub fn as_ref(&self) -> PerSide<&T> {
        PerSide {
            base: &self.base,
            tuned: &self.tuned,
        }
    }

    pub fn map<U>(self, mut f: impl FnMut(Side, T) -> U) -> PerSide<U> {
        let base = f(Side::Base, self.base);
        PerSide {
            base,
            tuned: f(Side::Tuned, self.tuned),
        }
    }

    /// The values with their sides, base first.
    pub fn iter(&self) -> impl Iterator<Item = (Side, &T)> {
        [(Side::Base, &self.base), (Side::Tuned, &self.tuned)].into_iter()
    }
}

impl<T> Index<Side> for PerSide<T> {
    type Output = T;

    fn index(&self, side: Side) -> &T {
        match side {
            Side::Base => &self.base,
            Side::Tuned => &self.tuned,
        }
    }
}

impl<T> IndexMut<Side> for PerSide<T> {
    fn index_mut(&mut self, side: Side) -> &mut T {
        match side {
            Side::Base => &mut self.base,
            Side::Tuned => &mut self.tuned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_index_their_values_and_serialise_by_name() {
        let mut p = PerSide::from_fn(|s| s.name().len());
        assert_eq!((p[Side::Base], p[Side::Tuned]), (4, 5));
        p[Side::Tuned] = 0;
        assert_eq!(p.map(|s, v| (s, v)).tuned, (Side::Tuned, 0));
        assert_eq!(
            serde_json::to_string(&PerSide { base: 1, tuned: 2 }).unwrap(),
            r#"{"base":1,"tuned":2}"#
        );
        assert_eq!(serde_json::to_string(&Side::Tuned).unwrap(), r#""tuned""#);
        let order: Vec<Side> = p.iter().map(|(s, _)| s).collect();
        assert_eq!(order, Side::BOTH);
    }
}
