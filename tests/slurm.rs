//! The SLURM packaging (`packaging/slurm/`) on a real scheduler: a one-node SLURM cluster on
//! localhost (munged, slurmctld and slurmd from Debian's `slurm-wlm` and `munge`, started here
//! with their own configuration, key, ports and state under a temporary folder) runs the demo
//! zoo's study base → GRPO as a job array of three shards and a merge job that depends on it,
//! through `submit.sh`; the merged study equals one unsharded run, file by file. Then one array
//! task is cancelled with `scancel` once its first answers are written (the merge job is
//! cancelled with it), re-submitted alone with `--tasks`, continues, and the new merge gives the
//! same files again. Last, a trajectory along the GRPO run's checkpoints goes the same way. The
//! daemons and every job are stopped when the test ends, also when it fails.
//!
//! Skipped, with the reason, where the scheduler cannot run: SLURM or munge not installed
//! (`.ci/setup` installs them), not root (slurmd starts the jobs as their user), or a munged that
//! does not start.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_circuitdiff");
const TOOLS: [&str; 8] = [
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "sinfo",
    "squeue",
    "scancel",
    "scontrol",
];
/// The files of a study that do not name its folders: equal between runs of the same study.
const DETERMINISTIC: [&str; 6] = [
    "answers.jsonl",
    "counts.json",
    "base/scores.safetensors",
    "tuned/scores.safetensors",
    "base/metrics.json",
    "comparison.json",
];

fn zoo(model: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/zoo")
        .join(model)
        .display()
        .to_string()
}

/// The study: 192 questions in chunks of 2 (64 per shard of 3), so that a shard answers for
/// seconds and can be cancelled in the middle; 6 scored pairs, 2 of them with exact effects.
fn study_args() -> Vec<String> {
    let mut args = vec![
        "--base".to_owned(),
        zoo("base"),
        "--tuned".to_owned(),
        zoo("grpo"),
    ];
    args.extend(
        [
            "--dataset",
            "builtin:arith",
            "--limit",
            "192",
            "--n",
            "6",
            "--alpha",
            "0.99",
            "--max-new-tokens",
            "32",
            "--batch",
            "2",
            "--exact-samples",
            "2",
        ]
        .map(str::to_owned),
    );
    args
}

/// The GRPO run's trajectory (the base, two kept checkpoints, the final model) on 16 questions.
fn trajectory_args() -> Vec<String> {
    let mut args = vec![zoo("grpo")];
    args.extend(
        [
            "--limit",
            "16",
            "--n",
            "4",
            "--alpha",
            "0.99",
            "--max-new-tokens",
            "32",
            "--batch",
            "4",
        ]
        .map(str::to_owned),
    );
    args
}

/// A program on PATH or in the sbin folders (where Debian puts the daemons, which a user's PATH
/// may leave out).
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Why the scheduler cannot run here, or None when it can be tried.
fn unavailable() -> Option<String> {
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|t| find(t).is_none())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "{} not found (Debian: apt-get install slurm-wlm slurm-client munge; .ci/setup does)",
            missing.join(", ")
        ));
    }
    let uid = Command::new("id").arg("-u").output();
    if !uid.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0") {
        return Some("not root: slurmd must start the jobs as their user".into());
    }
    None
}

/// A free TCP port on localhost (closed again for the daemon to take).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The node's memory in MiB as slurmd counts it, less a tenth so that the node is never found
/// to have less than configured.
fn real_memory_mib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal in /proc/meminfo");
    kib / 1024 * 9 / 10
}

/// slurm.conf of a one-node cluster whose files all lie under `dir`.
fn slurm_conf(dir: &Path, cpus: usize) -> String {
    let d = dir.display();
    format!(
        "ClusterName=circuitdiff-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge/socket
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/builtin
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
",
        ctld_port = free_port(),
        d_port = free_port(),
        mem = real_memory_mib(),
    )
}

/// A one-node SLURM cluster on localhost; dropping it cancels its jobs and stops its daemons.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    daemons: Vec<Child>,
}

impl Cluster {
    /// Start munged, slurmctld and slurmd and wait for the node to be idle; None (with the
    /// reason printed) where the scheduler cannot run here.
    fn start() -> Option<Cluster> {
        if let Some(why) = unavailable() {
            eprintln!("skipping the SLURM test: {why}");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("slurm")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        for sub in ["munge", "state", "spool", "log", "jobs"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // munged wants its socket's folders searchable by everyone and its key private.
        set_mode(d, 0o755);
        set_mode(&d.join("munge"), 0o755);
        let mut key = vec![0u8; 1024];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut key)
            .unwrap();
        std::fs::write(d.join("munge/munge.key"), key).unwrap();
        set_mode(&d.join("munge/munge.key"), 0o400);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let conf = d.join("slurm.conf");
        std::fs::write(&conf, slurm_conf(d, cpus)).unwrap();
        let mut cluster = Cluster {
            dir,
            conf,
            daemons: Vec::new(),
        };
        if let Err(why) = cluster.start_munged() {
            eprintln!("skipping the SLURM test: {why}");
            return None;
        }
        if let Err(why) = cluster.start_slurm() {
            eprintln!("skipping the SLURM test: {why}");
            return None;
        }
        Some(cluster)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, name: &'static str, program: &str, args: &[String]) {
        let log = std::fs::File::create(self.path().join(format!("log/{name}.out"))).unwrap();
        let child = Command::new(find(program).expect("checked by unavailable()"))
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        self.daemons.push(child);
    }

    fn start_munged(&mut self) -> Result<(), String> {
        let m = self.path().join("munge");
        let args = [
            "--foreground".to_owned(),
            format!("--key-file={}", m.join("munge.key").display()),
            format!("--socket={}", m.join("socket").display()),
            format!("--pid-file={}", m.join("munged.pid").display()),
            format!("--log-file={}", m.join("munged.log").display()),
            format!("--seed-file={}", m.join("munged.seed").display()),
        ];
        self.spawn("munged", "munged", &args);
        let socket = m.join("socket");
        if wait_until(Duration::from_secs(10), || socket.exists()) {
            return Ok(());
        }
        Err(format!(
            "munged did not start:\n{}",
            self.read_log("log/munged.out")
        ))
    }

    /// slurmctld and slurmd in the foreground (their children here), then `sinfo` until the
    /// node is idle; the daemons' logs when it does not become idle (a machine where slurmd
    /// cannot run, such as a container without the privileges it needs).
    fn start_slurm(&mut self) -> Result<(), String> {
        let conf = self.conf.display().to_string();
        self.spawn(
            "slurmctld",
            "slurmctld",
            &["-D".into(), "-f".into(), conf.clone()],
        );
        let slurmd = ["-D", "-N", "localhost", "-f", &conf].map(str::to_owned);
        self.spawn("slurmd", "slurmd", &slurmd);
        let idle = wait_until(Duration::from_secs(60), || {
            self.slurm("sinfo", &["-h", "-N", "-o", "%t"]).trim() == "idle"
        });
        if idle {
            return Ok(());
        }
        Err(format!(
            "the scheduler did not start (the node did not become idle in 60 s):\n{}",
            self.logs()
        ))
    }

    /// Run a SLURM client command against this cluster; its stdout.
    fn slurm(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(find(program).expect("checked by unavailable()"))
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `submit.sh [extra] KIND N cpu WORK ARGS...` with one CPU per job; the array and the
    /// merge job's ids.
    fn submit(
        &self,
        kind: &str,
        n: usize,
        work: &Path,
        extra: &[&str],
        args: &[String],
    ) -> (String, String) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/slurm/submit.sh");
        let out = Command::new("bash")
            .arg(script)
            .args(["--cpus", "1"])
            .args(extra)
            .args([kind, &n.to_string(), "cpu"])
            .arg(work)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .env("CIRCUITDIFF", BIN)
            .current_dir(self.path().join("jobs"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "submit.sh failed: {stdout}{stderr}");
        let mut ids = stdout.split_whitespace().map(str::to_owned);
        match (ids.next(), ids.next()) {
            (Some(a), Some(m)) => (a, m),
            _ => panic!("submit.sh printed no job ids: {stdout}{stderr}"),
        }
    }

    /// Each job's (or array task's) id and state.
    fn states(&self, job: &str) -> BTreeMap<String, String> {
        let out = self.slurm("scontrol", &["show", "job", "-o", job]);
        out.lines()
            .filter_map(|l| {
                let field = |k: &str| {
                    l.split_whitespace()
                        .find_map(|f| f.strip_prefix(k))
                        .map(str::to_owned)
                };
                let id = match (field("ArrayJobId="), field("ArrayTaskId=")) {
                    (Some(a), Some(t)) => format!("{a}_{t}"),
                    _ => field("JobId=")?,
                };
                Some((id, field("JobState=")?))
            })
            .collect()
    }

    /// Wait until every job (and array task) of `jobs` has ended; their final states.
    fn wait(&self, jobs: &[&str], work: &Path) -> BTreeMap<String, String> {
        const RUNNING: [&str; 6] = [
            "PENDING",
            "RUNNING",
            "COMPLETING",
            "CONFIGURING",
            "SUSPENDED",
            "REQUEUED",
        ];
        let mut states = BTreeMap::new();
        let done = wait_until(Duration::from_secs(150), || {
            states = jobs.iter().flat_map(|j| self.states(j)).collect();
            !states.is_empty() && states.values().all(|s| !RUNNING.contains(&s.as_str()))
        });
        assert!(done, "jobs still running: {states:?}\n{}", job_logs(work));
        states
    }

    fn read_log(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_default()
    }

    fn logs(&self) -> String {
        ["log/munged.out", "log/slurmctld.out", "log/slurmd.out"]
            .iter()
            .map(|f| format!("== {f}\n{}", self.read_log(f)))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.daemons.len() == 3 {
            let ids = self.slurm("squeue", &["-h", "-o", "%A"]);
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                self.slurm("scancel", &ids);
                wait_until(Duration::from_secs(15), || {
                    self.slurm("squeue", &["-h"]).trim().is_empty()
                });
            }
        }
        // slurmd, slurmctld, munged: SIGTERM lets each stop its helpers; SIGKILL after 10 s.
        for child in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let stopped = wait_until(Duration::from_secs(10), || {
                child.try_wait().is_ok_and(|s| s.is_some())
            });
            if !stopped {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Poll `ready` every 50 ms until it holds (true) or `limit` has passed (false).
fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

/// Every job log of a work folder, for failure messages.
fn job_logs(work: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(work.join("logs")) else {
        return format!("(no logs in {})", work.display());
    };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("== {}\n{}\n", p.display(), tail.join("\n"))
        })
        .collect()
}

fn lines(path: &Path) -> usize {
    std::fs::File::open(path).map_or(0, |f| BufReader::new(f).lines().count())
}

/// `circuitdiff KIND ARGS... --threads 1 --out OUT` here, without the scheduler.
fn run_alone(kind: &str, args: &[String], out: &Path) {
    let o = Command::new(BIN)
        .arg(kind)
        .args(args)
        .args(["--threads", "1", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "circuitdiff {kind}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn same_files(a: &Path, b: &Path, files: &[&str]) {
    for f in files {
        let read = |d: &Path| {
            std::fs::read(d.join(f)).unwrap_or_else(|e| panic!("{}: {e}", d.join(f).display()))
        };
        assert!(
            read(a) == read(b),
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// The array and its merge job all completed.
fn assert_completed(states: &BTreeMap<String, String>, work: &Path) {
    assert!(
        states.values().all(|s| s == "COMPLETED"),
        "{states:?}\n{}",
        job_logs(work)
    );
}

/// Submit the study, cancel array task 1 once it has written its first answers, check that it
/// stopped mid-way and that the merge job was cancelled with it, then re-submit task 1 alone.
fn cancel_and_resubmit(cluster: &Cluster, work: &Path) {
    let (array, merge) = cluster.submit("study", 3, work, &[], &study_args());
    let shard = work.join("shard-1/answers");
    let started = wait_until(Duration::from_secs(120), || {
        lines(&shard.join("base.jsonl")) > 0
    });
    assert!(started, "task 1 wrote no answers:\n{}", job_logs(work));
    let task = format!("{array}_1");
    cluster.slurm("scancel", &[&task]);
    let states = cluster.wait(&[&array, &merge], work);
    let answered = lines(&shard.join("base.jsonl")) + lines(&shard.join("tuned.jsonl"));
    assert_eq!(
        states[&task], "CANCELLED",
        "task 1 ended before scancel reached it ({answered} answers): {states:?}"
    );
    assert!(
        answered < 2 * 64,
        "task 1 had answered everything: {answered}"
    );
    assert_eq!(states[&merge], "CANCELLED", "{states:?}");
    assert!(!work.join("study/comparison.json").exists());
    eprintln!("task {task} cancelled after {answered} of 128 answers; re-submitting it");

    let (array, merge) = cluster.submit("study", 3, work, &["--tasks", "1"], &study_args());
    let states = cluster.wait(&[&array, &merge], work);
    assert_completed(&states, work);
    assert_eq!(lines(&shard.join("base.jsonl")), 64);
    assert_eq!(lines(&shard.join("tuned.jsonl")), 64);
}

#[test]
fn sharded_slurm_jobs_equal_one_run_also_after_a_cancelled_task() {
    let started = Instant::now();
    let Some(cluster) = Cluster::start() else {
        return;
    };
    eprintln!(
        "SLURM cluster up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let tmp = cluster.path().to_owned();
    let whole = tmp.join("whole");
    run_alone("study", &study_args(), &whole);

    // Three array tasks answer a third of the questions each; the merge job scores and compares.
    let work = tmp.join("study");
    let (array, merge) = cluster.submit("study", 3, &work, &[], &study_args());
    let states = cluster.wait(&[&array, &merge], &work);
    assert_eq!(states.len(), 4, "{states:?}");
    assert_completed(&states, &work);
    same_files(&whole, &work.join("study"), &DETERMINISTIC);

    // A task cancelled mid-way and re-submitted alone continues: the same study.
    let killed = tmp.join("cancelled");
    cancel_and_resubmit(&cluster, &killed);
    same_files(&whole, &killed.join("study"), &DETERMINISTIC);

    // A trajectory sharded by checkpoint: the same folder as one run, file for file.
    let whole = tmp.join("trajectory-whole");
    run_alone("trajectory", &trajectory_args(), &whole);
    let work = tmp.join("trajectory");
    let (array, merge) = cluster.submit("trajectory", 2, &work, &[], &trajectory_args());
    let states = cluster.wait(&[&array, &merge], &work);
    assert_completed(&states, &work);
    let files = common::relative_files(&whole);
    assert!(
        files.iter().any(|f| f == Path::new("summary.json")),
        "{files:?}"
    );
    common::assert_same_files(&whole, &work.join("trajectory"));
    eprintln!(
        "SLURM test done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
