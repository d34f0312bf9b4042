//! Determinism (DESIGN.md §6, issue 6 item 4): documents are bit-identical with 1 and 2 threads
//! and across repeated runs — reductions run over a fixed block partition in a fixed order.

use assert_cmd::Command;

fn run(threads: &str, args: &[&str], out: &std::path::Path) -> Vec<u8> {
    Command::cargo_bin("flatcert")
        .expect("binary")
        .env("RAYON_NUM_THREADS", threads)
        .args(args)
        .arg("--json")
        .arg(out)
        .arg("--quiet")
        .assert()
        .success();
    std::fs::read(out).expect("written")
}

#[test]
fn measure_is_bit_identical_across_thread_counts_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = run("1", &["measure"], &dir.path().join("a.json"));
    let b = run("2", &["measure"], &dir.path().join("b.json"));
    let c = run("2", &["measure"], &dir.path().join("c.json"));
    assert_eq!(a, b, "1 vs 2 threads");
    assert_eq!(b, c, "repeated run");
}
