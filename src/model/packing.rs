//! How the rows of one pass lay out their tokens, and the packed layout of a training batch:
//! answers that continue the same prompt share one copy of it. A group of sampled answers to
//! one question then costs the prompt once, where one row per answer costs it once per answer;
//! each answer attends to its prompt and to itself, at the positions it would have alone.

use std::ops::Range;

/// How the rows of a pass lay out their tokens: where each slot sits (its rotary position) and
/// which earlier slots it attends to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rows<'a> {
    /// Every row's slots at positions from the cache's length on, causal.
    Aligned,
    /// Row r's tokens start at slot `pads[r]` (a left-padded batch of prompts): its positions
    /// count from there, and its padding is never attended to.
    LeftPadded(&'a [usize]),
    /// Rows of sequences packed after their shared prompts.
    Packed(&'a Packing),
}

impl Rows<'_> {
    /// The number of rows whose layouts differ (tables and masks then go per row), or `None`
    /// when every row has the same.
    pub(crate) fn distinct(&self) -> Option<usize> {
        match self {
            Self::Aligned => None,
            Self::LeftPadded(pads) => Some(pads.len()),
            Self::Packed(p) => Some(p.rows.len()),
        }
    }

    /// The rotary position of slot `slot` of row `row`.
    pub(crate) fn position(&self, row: usize, slot: usize) -> usize {
        match self {
            Self::Aligned => slot,
            Self::LeftPadded(pads) => slot.saturating_sub(pads[row]),
            Self::Packed(p) => p.slots[row][slot].position,
        }
    }

    /// Whether slot `query` of row `row` attends to slot `key` (before any sliding window). A
    /// padding slot sees only itself, so that its (unused) state stays finite; real tokens
    /// never see padding.
    pub(crate) fn visible(&self, row: usize, query: usize, key: usize) -> bool {
        match self {
            Self::Aligned => key <= query,
            Self::LeftPadded(pads) => {
                let pad = pads[row];
                if query < pad {
                    key == query
                } else {
                    key >= pad && key <= query
                }
            }
            Self::Packed(p) => {
                let s = &p.slots[row][query];
                key <= query && (key >= s.start || s.prompt.contains(&key))
            }
        }
    }
}

/// A slot of a packed row.
#[derive(Debug, Clone)]
struct Slot {
    position: usize,
    /// The first slot of the span it belongs to (its prompt, its answer, or itself for padding).
    start: usize,
    /// The prompt an answer slot continues (empty for prompts and padding).
    prompt: Range<usize>,
}

/// Where one (prompt, answer) sequence of a [`Packing`] lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub row: usize,
    /// The slots of its prompt.
    pub prompt: Range<usize>,
    /// The slots of its answer.
    pub answer: Range<usize>,
}

impl Placement {
    /// The slot whose next-token prediction is answer token `k`: the prompt's last slot for the
    /// first, then the answer's own slots.
    pub fn predictor(&self, k: usize) -> usize {
        if k == 0 {
            self.prompt.end - 1
        } else {
            self.answer.start + k - 1
        }
    }
}

/// (prompt, answer) sequences packed into rows of one width: consecutive sequences with the
/// same prompt share a row and one copy of the prompt, answer after answer, while the row stays
/// within [`Packing::CAP`] slots (or one sequence's length, when that is longer); a new prompt
/// starts a new row. Rows are padded at the end.
#[derive(Debug, Clone)]
pub struct Packing {
    rows: Vec<Vec<u32>>,
    slots: Vec<Vec<Slot>>,
    placements: Vec<Placement>,
}

impl Packing {
    /// The slots a row grows to before the next answer starts a new one: the attention of a row
    /// keeps its probabilities, which grow as the square of its length.
    pub const CAP: usize = 256;

    /// Pack `pairs` of non-empty (prompt, answer) ids.
    pub fn new(pairs: &[(&[u32], &[u32])]) -> Self {
        let longest = pairs.iter().map(|(p, a)| p.len() + a.len()).max();
        let cap = longest.unwrap_or(0).max(Self::CAP);
        let mut rows: Vec<Vec<u32>> = Vec::new();
        let mut slots: Vec<Vec<Slot>> = Vec::new();
        let mut placements: Vec<Placement> = Vec::new();
        for (i, &(prompt, answer)) in pairs.iter().enumerate() {
            let shares = i > 0 && pairs[i - 1].0 == prompt;
            let fits = rows.last().is_some_and(|r| r.len() + answer.len() <= cap);
            let span = match placements.last() {
                Some(last) if shares && fits => last.prompt.clone(),
                _ => {
                    rows.push(prompt.to_vec());
                    slots.push(
                        (0..prompt.len())
                            .map(|j| Slot {
                                position: j,
                                start: 0,
                                prompt: 0..0,
                            })
                            .collect(),
                    );
                    0..prompt.len()
                }
            };
            let (row, slot) = (rows.len() - 1, &mut slots[rows.len() - 1]);
            let ids = &mut rows[row];
            let start = ids.len();
            ids.extend_from_slice(answer);
            slot.extend((0..answer.len()).map(|j| Slot {
                position: span.end + j,
                start,
                prompt: span.clone(),
            }));
            placements.push(Placement {
                row,
                prompt: span,
                answer: start..ids.len(),
            });
        }
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        for (ids, slot) in rows.iter_mut().zip(&mut slots) {
            let pad = ids.first().copied().unwrap_or(0);
            for s in ids.len()..width {
                slot.push(Slot {
                    position: s,
                    start: s,
                    prompt: 0..0,
                });
            }
            ids.resize(width, pad);
        }
        Self {
            rows,
            slots,
            placements,
        }
    }

    /// The packed rows' ids, all of one width.
    pub fn rows(&self) -> &[Vec<u32>] {
        &self.rows
    }

    /// Where each sequence lies, in the order given.
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three answers to one prompt share it; a new prompt starts a row; each answer sees its
    /// prompt and itself at the positions it would have alone, and nothing else.
    #[test]
    fn answers_share_their_prompt_and_see_only_it_and_themselves() {
        let (p, q) = ([1u32, 2, 3], [7u32, 8]);
        let pairs: Vec<(&[u32], &[u32])> = vec![(&p, &[4, 5]), (&p, &[6]), (&q, &[9, 9, 9])];
        let pack = Packing::new(&pairs);
        assert_eq!(
            pack.rows(),
            [vec![1, 2, 3, 4, 5, 6], vec![7, 8, 9, 9, 9, 7]]
        );
        let at = pack.placements();
        assert_eq!(
            at[1],
            Placement {
                row: 0,
                prompt: 0..3,
                answer: 5..6
            }
        );
        assert_eq!((at[1].predictor(0), at[0].predictor(1)), (2, 3));
        let rows = Rows::Packed(&pack);
        // The second answer (slot 5) sits where it would alone: after its 3-token prompt.
        assert_eq!(rows.position(0, 5), 3);
        let seen: Vec<usize> = (0..6).filter(|&k| rows.visible(0, 5, k)).collect();
        assert_eq!(seen, [0, 1, 2, 5]);
        let seen: Vec<usize> = (0..6).filter(|&k| rows.visible(0, 4, k)).collect();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        // Padding sees itself alone, and no token sees it.
        assert!((0..6).all(|k| rows.visible(1, 5, k) == (k == 5)));
        assert!((0..5).all(|q| !rows.visible(1, q, 5)));
    }

    /// A row stops growing at the cap: the next answer to the same prompt starts a new row with
    /// its own copy of the prompt.
    #[test]
    fn a_full_row_starts_another_with_the_prompt_again() {
        let p = [1u32; 10];
        let a = vec![2u32; Packing::CAP / 2];
        let pairs: Vec<(&[u32], &[u32])> = vec![(&p, &a), (&p, &a), (&p, &a)];
        let pack = Packing::new(&pairs);
        let rows: Vec<usize> = pack.placements().iter().map(|x| x.row).collect();
        assert_eq!(rows, [0, 1, 2]);
        assert_eq!(pack.rows()[0].len(), 10 + Packing::CAP / 2);
    }
}
