//! The checking engine (method.md §7): the exact effects and faithfulness curve of each
//! chosen sample of a scored run, each written into the run directory as it completes, so that
//! an interrupted check resumes. What the files hold and how the checks are summarised is
//! [`crate::report::validation`]'s.

use crate::attribution::exact::{
    by_magnitude, chosen_edges, curve_grid, Ablation, AblationError, ExactOptions,
};
use crate::model::Model;
use crate::progress::{CancelToken, Progress};
use crate::report::run::{Run, RunDir, RunError, ScoreSample};
use crate::report::validation::{read_check, write_check, SampleCheck};

/// The top edges by |S| of sample `index` of `run`.
fn top_edges(run: &Run, index: usize, k: usize) -> Vec<(usize, usize)> {
    let mut ranked = by_magnitude(&run.manifest.graph, &run.scores[index].dense);
    ranked.truncate(k);
    ranked
}

/// Check the samples `chosen` of `run` (scored by `model` on `samples`): exact effects of each
/// sample's top edges, of `other`'s top edges on the same sample when given (a study measures
/// both models on the union), and of a seeded random sample of the rest, and the sample's
/// faithfulness curve. Files already written with the same edges are read back; `None` when
/// cancelled.
#[allow(clippy::too_many_arguments)]
pub fn check_run(
    stage: &str,
    model: &Model,
    run: &Run,
    other: Option<&Run>,
    samples: &[ScoreSample],
    chosen: &[usize],
    opts: &ExactOptions,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<Vec<SampleCheck>>, RunError> {
    let graph = &run.manifest.graph;
    progress.start(stage, chosen.len() as u64);
    let mut out = Vec::with_capacity(chosen.len());
    for (done, &i) in chosen.iter().enumerate() {
        let id = &run.manifest.samples[i].id;
        let others = match other {
            Some(o) => {
                let j = o
                    .manifest
                    .samples
                    .iter()
                    .position(|s| s.id == *id)
                    .ok_or_else(|| RunError::Invalid {
                        path: o.dir.clone(),
                        message: format!("no sample `{id}` to pair with {}", run.dir.display()),
                    })?;
                top_edges(o, j, opts.top)
            }
            None => Vec::new(),
        };
        let top = top_edges(run, i, opts.top);
        let seed = opts.seed.wrapping_add(i as u64);
        let edges = chosen_edges(graph, &top, &others, opts.others(graph), seed);
        let path = RunDir::new(&run.dir).exact_path(i);
        let grid = curve_grid(graph.num_edges());
        let kept = read_check(&path, progress).filter(|c| {
            c.options == *opts && c.id == *id && c.edges() == edges && c.curve.edges == grid
        });
        let check = match kept {
            Some(c) => c,
            None => {
                if cancel.is_cancelled() {
                    return Ok(None);
                }
                let s = &samples[i];
                let dense = &run.scores[i].dense;
                let ablation = Ablation::new(
                    model,
                    graph,
                    id,
                    (&s.prompt_ids, &s.answer_ids),
                    run.manifest.method.cut,
                    opts.batch,
                )?
                .cancelled_by(cancel);
                let measured = ablation
                    .effects(dense, &edges)
                    .and_then(|effects| Ok((effects, ablation.faithfulness(dense)?)));
                let (effects, curve) = match measured {
                    Ok(m) => m,
                    Err(AblationError::Cancelled) => return Ok(None),
                    Err(AblationError::Tensor(e)) => return Err(e.into()),
                };
                let check = SampleCheck {
                    index: i,
                    id: id.clone(),
                    options: *opts,
                    effects,
                    curve,
                };
                write_check(&path, &check)?;
                check
            }
        };
        out.push(check);
        progress.set(done as u64 + 1);
    }
    Ok(Some(out))
}
