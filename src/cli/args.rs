//! Value parsers of the numeric flags. Each checks its range when the arguments are parsed, so
//! that a bad value stops the command before anything is read or written, and clap's message
//! names the flag, the value and the allowed range:
//! `invalid value '2' for '--top-p <TOP_P>': must be a finite number in (0, 1]`.

/// A parser of whole numbers in `min..=max` (`max` = `usize::MAX`: no upper bound).
pub fn whole_in(
    min: usize,
    max: usize,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync {
    move |s| match s.parse::<usize>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ if max == usize::MAX => Err(format!("must be a whole number ≥ {min}")),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

/// A parser of whole numbers of at least `min`.
pub fn at_least(min: usize) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync {
    whole_in(min, usize::MAX)
}

/// A window size `WIDTHxHEIGHT` in points, each from 320 to 10000.
#[cfg(feature = "gui")]
pub fn window_size(s: &str) -> Result<[f32; 2], String> {
    let bad = || format!("expected WIDTHxHEIGHT such as 1920x1080, got '{s}'");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let side = |t: &str| {
        t.trim()
            .parse::<u32>()
            .ok()
            .filter(|v| (320..=10_000).contains(v))
            .map(|v| v as f32)
            .ok_or_else(bad)
    };
    Ok([side(w)?, side(h)?])
}

/// A finite number strictly between 0 and 1.
pub fn open_unit(s: &str) -> Result<f64, String> {
    finite_in(s, |v| v > 0.0 && v < 1.0, "in (0, 1)")
}

/// A finite number above 0, at most 1.
pub fn unit_above_zero(s: &str) -> Result<f64, String> {
    finite_in(s, |v| v > 0.0 && v <= 1.0, "in (0, 1]")
}

/// A finite number above 0.
pub fn positive_finite(s: &str) -> Result<f64, String> {
    finite_in(s, |v| v > 0.0, "> 0")
}

/// `s` as a finite number for which `inside` holds; `range` describes the allowed values.
fn finite_in(s: &str, inside: impl Fn(f64) -> bool, range: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && inside(v) => Ok(v),
        _ => Err(format!("must be a finite number {range}")),
    }
}

/// A stop string (`--stop`): any text but the empty one, which would end every answer at once.
pub fn stop_string(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty: an empty stop string would end every answer at once".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// `--shard I/N`: shard `I` of `N`, counted from 0.
pub fn shard(s: &str) -> Result<(usize, usize), String> {
    let parsed = s
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    match parsed {
        Some((i, n)) if i < n => Ok((i, n)),
        _ => Err("expected I/N, shard I of N counted from 0 (0 ≤ I < N), e.g. 0/4".to_owned()),
    }
}
