//! candle's CPU matmul (the `gemm` crate) is built with AVX-512 kernels and picks its kernel at
//! run time. The same binary, run under QEMU's user-mode emulation of a CPU without AVX-512
//! (Haswell: AVX2 and FMA) and of one without AVX (qemu64: SSE2 only), must take the fallback
//! kernels — an AVX-512 instruction there is an illegal instruction, since QEMU 7.2 does not
//! emulate AVX-512 — and give the same edge scores as the native run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]
#![cfg(target_arch = "x86_64")]

use candle_core::{safetensors, Device};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_circuitdiff");

/// Run the binary, natively (`cpu` None) or under `qemu-x86_64 -cpu CPU`; returns stdout.
/// Natively it runs with glibc's tunables unset, as a user would start it; under QEMU with the
/// huge-page tunable set to 0, so that it does not run itself again
/// (`runtime::run_on_huge_pages`): QEMU hands an exec to the host, which would run it natively.
fn run(cpu: Option<&str>, args: &[&str]) -> String {
    let mut cmd = match cpu {
        None => {
            let mut c = Command::new(BIN);
            c.env_remove("GLIBC_TUNABLES");
            c
        }
        Some(cpu) => {
            let mut c = Command::new("qemu-x86_64");
            c.args(["-cpu", cpu, BIN])
                .env("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0");
            c
        }
    };
    // Two threads, so the emulated run goes through the parallel kernels as well.
    let out = cmd
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap_or_else(|e| {
            panic!("run {cpu:?}: {e} (the fallback test needs qemu-user; .ci/setup installs it)")
        });
    assert!(
        out.status.success(),
        "{cpu:?} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kernel(cpu: Option<&str>) -> String {
    let info: serde_json::Value = serde_json::from_str(&run(cpu, &["bench", "--cpu"])).unwrap();
    info["matmul_kernel"].as_str().unwrap().to_owned()
}

fn scores(run_dir: &Path) -> Vec<f32> {
    let t = safetensors::load(run_dir.join("scores.safetensors"), &Device::Cpu).unwrap();
    t["all_scores"].flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn fallback_kernels_are_taken_without_avx512_and_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Wide enough (128) that the matrix products go through gemm's blocked kernels.
    let model = dir.join("model");
    let model = model.to_str().unwrap();
    run(
        None,
        &[
            "bench",
            "--write-random-llama",
            model,
            "--random-shape",
            "128,2,4,2,256,128",
        ],
    );
    let samples = dir.join("samples.json");
    let ids = |n: u32, off: u32| (0..n).map(|i| (i * 37 + off) % 90).collect::<Vec<_>>();
    std::fs::write(
        &samples,
        serde_json::json!([
            {"id": "a", "prompt_ids": ids(40, 3), "answer_ids": ids(6, 11)},
            {"id": "b", "prompt_ids": ids(25, 7), "answer_ids": ids(9, 5)},
        ])
        .to_string(),
    )
    .unwrap();
    let score = |cpu: Option<&str>, name: &str| {
        let out = dir.join(name);
        run(
            cpu,
            &[
                "score",
                "--model",
                model,
                "--samples",
                samples.to_str().unwrap(),
                "--cut",
                "4",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        scores(&out)
    };

    if std::arch::is_x86_feature_detected!("avx512f") {
        assert_eq!(kernel(None), "avx512");
    }
    let native = score(None, "native");
    let max = native.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(max > 0.0);
    for (cpu, expected) in [("Haswell", "avx2-fma"), ("qemu64", "scalar")] {
        assert_eq!(kernel(Some(cpu)), expected, "{cpu}");
        let emulated = score(Some(cpu), cpu);
        assert_eq!(emulated.len(), native.len());
        // Other kernels sum in another order: f32 rounding only.
        let worst = native
            .iter()
            .zip(&emulated)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4 * max,
            "{cpu}: scores differ by {worst} (max |S| {max})"
        );
    }
}

/// The binary runs itself again with glibc's heap on transparent huge pages
/// (`runtime::run_on_huge_pages`), and says so wherever the kernel allows them.
#[test]
fn the_binary_puts_its_heap_on_huge_pages() {
    let info: serde_json::Value = serde_json::from_str(&run(None, &["bench", "--cpu"])).unwrap();
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let allowed = thp.contains("[always]") || thp.contains("[madvise]");
    assert_eq!(info["heap_huge_pages"], allowed, "{info} with {thp:?}");
}
