//! The CPU threads that the attribution pass's kernels share with candle's.
//!
//! candle runs its CPU elementwise kernels on a pool of its own
//! ([`candle_core::utils::barrier_pool`]): the calling thread plus workers that spin for a while
//! between calls before they sleep. The pass's own kernels (the projections, the attention
//! core, the gated MLP, the norms, the score product) run on the same pool. A pass is thousands
//! of parallel steps of a fraction of a millisecond each, with candle's steps in between: on one
//! pool the same threads stay awake through all of them, where a second pool (rayon's) would
//! let its threads fall asleep between steps, wake each again (an inter-processor interrupt,
//! costly on a virtual machine) and compete with candle's spinning workers for the cores.
//!
//! candle's pool does not nest: work already on the pool runs a nested call on its own thread.
//! Work handed to the pool never calls candle's tensor operations, which would wait for the
//! pool they are running on.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::Mutex;

thread_local! {
    /// Whether this thread is running pool work, as the caller of a pool call or as one of the
    /// threads running its items.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// The threads that [`for_each`] spreads work over here: the pool's, or one inside pool work.
pub(crate) fn threads() -> usize {
    if INSIDE.with(Cell::get) {
        1
    } else {
        candle_core::utils::barrier_pool().n_workers() + 1
    }
}

/// `f(item)` for every item, the items taken in order by whichever thread of the pool is free.
/// Runs on the calling thread alone for fewer than two items, on a pool of one thread, or
/// inside other pool work.
pub(crate) fn for_each<I: Send>(items: Vec<I>, f: impl Fn(I) + Sync) {
    if items.len() < 2 || threads() == 1 {
        items.into_iter().for_each(f);
        return;
    }
    let slots: Vec<Mutex<Option<I>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let take = |i: usize| slots[i].lock().unwrap_or_else(|e| e.into_inner()).take();
    candle_core::utils::barrier_pool().execute_chunked(slots.len(), |range| {
        let _inside = Inside::enter();
        for item in range.filter_map(take) {
            f(item);
        }
    });
}

/// A new vector of `N` parts of `len` elements each, written by `f` on the pool: task `i` gets
/// chunk `i` (elements `i·chunk..`, the last chunk shorter) of every part, zero-filled by the
/// task itself just before. The allocator would zero-fill the whole vector on the calling
/// thread while the pool's others wait; here each thread fills what it writes next, in cache.
pub(crate) fn filled<T, const N: usize>(
    len: usize,
    chunk: usize,
    f: impl Fn(usize, [&mut [T]; N]) + Sync,
) -> Vec<T>
where
    T: num_traits::Zero + Copy + Send + Sync,
{
    let mut out: Vec<T> = Vec::with_capacity(N * len);
    let spare = out
        .spare_capacity_mut()
        .get_mut(..N * len)
        .unwrap_or_default();
    let mut parts = spare
        .chunks_mut(len.max(1))
        .map(|p| p.chunks_mut(chunk.max(1)));
    let mut parts: [_; N] = std::array::from_fn(|_| parts.next());
    let tasks: Vec<_> = (0..len.div_ceil(chunk.max(1)))
        .map(|i| {
            let chunks = parts
                .each_mut()
                .map(|p| p.as_mut().and_then(Iterator::next));
            (i, chunks.map(Option::unwrap_or_default))
        })
        .collect();
    for_each(tasks, |(i, chunks): (usize, [&mut [MaybeUninit<T>]; N])| {
        let chunks = chunks.map(|c| {
            c.fill(MaybeUninit::new(T::zero()));
            // SAFETY: every element of `c` was written on the line above, and MaybeUninit<T>
            // has T's layout.
            unsafe { &mut *(std::ptr::from_mut(c) as *mut [T]) }
        });
        f(i, chunks);
    });
    // SAFETY: the tasks' chunks tile the N·len elements and every task ran (for_each runs each
    // item once, or the panic of one unwinds past this line), zero-filling its chunks.
    unsafe { out.set_len(N * len) };
    out
}

/// Marks this thread as running pool work until dropped (also when the work panics), and
/// restores what it was before.
struct Inside(bool);

impl Inside {
    fn enter() -> Self {
        Self(INSIDE.with(|c| c.replace(true)))
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with(|c| c.set(self.0));
    }
}

/// `f(item)` for every item on the pool, as [`for_each`]; the results in the items' order, or
/// the first error in that order.
pub(crate) fn try_map<I: Send, R: Send, E: Send>(
    items: Vec<I>,
    f: impl Fn(I) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let out: Vec<Mutex<Option<Result<R, E>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    for_each(items.into_iter().enumerate().collect(), |(i, item)| {
        *out[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(f(item));
    });
    out.into_iter()
        .map(|slot| {
            let done = slot.into_inner().unwrap_or_else(|e| e.into_inner());
            #[expect(
                clippy::expect_used,
                reason = "for_each runs each item once, or the panic of one unwinds past this line"
            )]
            done.expect("the pool ran every item")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Every item runs exactly once, also from a nested call (which runs on its caller's
    /// thread instead of waiting for the pool it is on); results keep the items' order and the
    /// first error in that order wins.
    #[test]
    fn every_item_runs_once_in_order_and_nesting_runs_inline() {
        let runs: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
        for_each((0..10).collect(), |outer: usize| {
            for_each((0..10).collect(), |inner: usize| {
                runs[outer * 10 + inner].fetch_add(1, Ordering::Relaxed);
            });
        });
        assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1));
        let squares = try_map((0..37u64).collect(), |i| Ok::<_, String>(i * i)).unwrap();
        assert_eq!(squares, (0..37u64).map(|i| i * i).collect::<Vec<_>>());
        let failed = try_map((0..37u64).collect(), |i| {
            if i % 10 == 7 {
                Err(i)
            } else {
                Ok(i)
            }
        });
        assert_eq!(failed, Err(7));
        assert!(try_map(Vec::<u8>::new(), Ok::<_, ()>).unwrap().is_empty());
    }
}
