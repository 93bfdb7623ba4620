//! Many `capsule run`s appending to one log at once never fork the chain: 8 workers
//! x 50 runs, then `capsule verify` and an exact count of invocations.

use std::collections::BTreeMap;

use capsule_tests::audit_support::{AuditSandbox, assert_ok, kind, records};

#[test]
fn eight_workers_times_fifty_runs_leave_one_intact_chain_with_every_invocation() {
    const WORKERS: usize = 8;
    const RUNS: usize = 50;
    let sandbox = AuditSandbox::new();
    // Warm the compile cache so the runs race on the log, not on the compiler; that
    // run's log is set aside so the count below is exact.
    sandbox.run_true();
    std::fs::remove_file(sandbox.log()).unwrap();

    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                for _ in 0..RUNS {
                    assert_ok(&sandbox.run(&[], &["/bin/true"]));
                }
            });
        }
    });

    let (code, report) = sandbox.verify(&sandbox.log(), &[]);
    assert_eq!(code, 0, "{report:#}");
    let all = records(&sandbox.log());
    assert_eq!(report["records"].as_u64(), Some(all.len() as u64));
    let mut starts = BTreeMap::new();
    let mut ends = BTreeMap::new();
    let mut genesis = 0;
    for record in &all {
        match kind(record) {
            "log.genesis" => genesis += 1,
            "invocation.start" => {
                starts.insert(record["seq"].as_str().unwrap().to_owned(), record["data"]["argv"].clone());
            }
            "invocation.end" => {
                let invocation = record["data"]["invocation"].as_str().unwrap().to_owned();
                assert_eq!(record["data"]["exit_code"], 0);
                assert!(ends.insert(invocation, ()).is_none(), "one end per invocation");
            }
            _ => {}
        }
    }
    assert_eq!(genesis, 1, "exactly one creator of the log");
    assert_eq!(starts.len(), WORKERS * RUNS);
    assert_eq!(ends.len(), WORKERS * RUNS);
    assert!(starts.keys().all(|seq| ends.contains_key(seq)), "every start has its end");
}
