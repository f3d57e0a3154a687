//! Process-wide CPU settings, and the facts about the CPU that the speed of a run depends on.
//!
//! The binary calls [`tune`] first thing, for the app and every subcommand alike; a library user
//! (or a test) that wants the measured speed calls it too, before any thread or tensor exists.
//! [`CpuInfo`] names the processor and the matrix kernel that candle's CPU matmul (the `gemm`
//! crate) picks on it, so that every benchmark says where it ran.

use serde::Serialize;

/// candle's CPU pool, which also runs the attribution pass's kernels (`model/kernels/pool.rs`), spins
/// this many times waiting for work before it parks. With the whole pass on that pool, limits
/// from 2,000 to 200,000 measure the same (BENCHMARKS.md); a short spin gives the cores back
/// sooner to other work, such as the app's interface. (When the pass's kernels ran on rayon's
/// pool, candle's default of 25,000 competed with rayon's workers on a few cores.)
const BARRIER_POOL_SPIN_LIMIT: &str = "4000";

/// Process-wide settings for candle on the CPU. Call it before any other thread exists.
///
/// - `threads`: threads for the CPU kernels, candle's and the pass's (default: all cores).
/// - candle's elementwise pool spin limit ([`BARRIER_POOL_SPIN_LIMIT`]); an explicit
///   `CANDLE_BARRIER_POOL_SPIN_LIMIT` wins.
/// - glibc serves large blocks with fresh `mmap`s and returns freed memory to the kernel, so
///   each of the thousands of activation-sized tensors of a pass is page-faulted anew (12 % of
///   the time in `perf`, and a 1.7× slower differentiable pass). Freed memory stays in the heap.
pub fn tune(threads: Option<usize>) {
    if let Some(n) = threads {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", BARRIER_POOL_SPIN_LIMIT);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; the caller runs it before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Hand the pages of freed memory in glibc's heap back to the kernel ([`tune`] keeps it there
/// between passes). A phase that follows others of different shapes (a training pass after
/// sampling) otherwise finds the heap fragmented by their freed blocks and grows it: 1.3 GB of
/// a GRPO step's 4 GB peak on SmolLM2-135M (BENCHMARKS.md). Its blocks are page-faulted anew.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_freed_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists and takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Elsewhere the allocator returns freed memory by its own rules.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed_memory() {}

/// The glibc tunable that has malloc back its heap with transparent huge pages.
const HUGE_PAGE_TUNABLE: &str = "glibc.malloc.hugetlb";

/// Run this program again, in place of this process (same pid, arguments and environment), with
/// glibc's malloc backing its heap with transparent huge pages (`GLIBC_TUNABLES` gets
/// `glibc.malloc.hugetlb=1`); returns at once where the tunable is set already, or when the
/// program cannot be run again (this process then goes on as it is). Call it first thing in
/// `main`: glibc reads its tunables only when a process starts.
///
/// An attribution pass reads every weight twice (forward and backward) and hundreds of
/// megabytes of activations; on 4 KiB pages most of those reads miss the TLB, and the weight
/// products spend more time copying the weights into gemm's panels than multiplying
/// (BENCHMARKS.md: 1.3–1.5× faster scoring on 2 MiB pages). The kernel gives huge pages only to
/// memory advised for them (`madvise`, the default setting of transparent huge pages), which the
/// tunable makes glibc do for all the heap; glibc before 2.35 ignores it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn run_on_huge_pages() {
    use std::os::unix::process::CommandExt as _;
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if tunables.contains(HUGE_PAGE_TUNABLE) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let tunables = match tunables.as_str() {
        "" => format!("{HUGE_PAGE_TUNABLE}=1"),
        t => format!("{t}:{HUGE_PAGE_TUNABLE}=1"),
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    // `exec` returns only when it fails.
    let _failed = cmd.args(args).env("GLIBC_TUNABLES", tunables).exec();
}

/// Elsewhere the allocator is left as it is.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn run_on_huge_pages() {}

/// The f32/f64 matrix kernel that candle's CPU matmul runs on this processor.
///
/// The `gemm` crate is built with its `x86-v4` feature (see Cargo.toml) and chooses at run time:
/// AVX-512F when the CPU has it, else AVX2 with FMA, else scalar code. This mirrors that rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKernel {
    Avx512,
    Avx2Fma,
    Neon,
    Scalar,
}

impl MatmulKernel {
    /// The kernel `gemm` selects on the running CPU.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                MatmulKernel::Avx512
            } else if std::arch::is_x86_feature_detected!("fma") {
                MatmulKernel::Avx2Fma
            } else {
                MatmulKernel::Scalar
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                MatmulKernel::Neon
            } else {
                MatmulKernel::Scalar
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            MatmulKernel::Scalar
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MatmulKernel::Avx512 => "avx512",
            MatmulKernel::Avx2Fma => "avx2-fma",
            MatmulKernel::Neon => "neon",
            MatmulKernel::Scalar => "scalar",
        }
    }
}

/// Written as its [`MatmulKernel::name`].
impl Serialize for MatmulKernel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The processor a measurement ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuInfo {
    /// The model name the OS reports (`/proc/cpuinfo` on Linux), or the architecture.
    pub model: String,
    /// Family, model and stepping numbers (Linux), which tell apart virtual CPUs that report
    /// the same generic name.
    pub id: Option<String>,
    /// Logical cores this process may use.
    pub cores: usize,
    pub matmul_kernel: MatmulKernel,
    /// Whether malloc's heap is on transparent huge pages: the tunable of
    /// [`run_on_huge_pages`] set to 1, and the kernel's setting `always` or `madvise`.
    pub heap_huge_pages: bool,
}

impl CpuInfo {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        // The first processor's value of a `key : value` line.
        let field = |key: &str| {
            cpuinfo
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_string())
        };
        let id = match (field("cpu family"), field("model"), field("stepping")) {
            (Some(f), Some(m), Some(s)) => Some(format!("family {f} model {m} stepping {s}")),
            _ => None,
        };
        CpuInfo {
            model: field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            id,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            matmul_kernel: MatmulKernel::detect(),
            heap_huge_pages: heap_huge_pages(),
        }
    }
}

fn heap_huge_pages() -> bool {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let advised = tunables
        .split(':')
        .any(|t| t == format!("{HUGE_PAGE_TUNABLE}=1"));
    let kernel =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    cfg!(all(target_os = "linux", target_env = "gnu"))
        && advised
        && (kernel.contains("[always]") || kernel.contains("[madvise]"))
}

impl std::fmt::Display for CpuInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.model)?;
        if let Some(id) = &self.id {
            write!(f, " ({id})")?;
        }
        write!(
            f,
            ", {} cores, matmul kernel {}",
            self.cores,
            self.matmul_kernel.name()
        )?;
        if self.heap_huge_pages {
            write!(f, ", heap on huge pages")?;
        }
        Ok(())
    }
}
