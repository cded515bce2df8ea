//! Checks the PostgreSQL test support (tests/support/pg.rs, scripts/with-postgres.sh,
//! scripts/pg-ctl.sh) against the cluster of `scripts/with-postgres.sh`: a fresh database
//! answers, a paused server hangs clients until resumed, a restarted one answers again with its
//! data, and `terminate_backends` cuts the connections it is asked to. Without a cluster the
//! test skips (and fails with CI=true).

#[path = "support/pg.rs"]
mod pg;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn dsn_rewriting() {
    let kv = "host=127.0.0.1 port=5 user=tessera dbname=tessera";
    assert_eq!(
        pg::with_dbname(kv, "x_1"),
        "host=127.0.0.1 port=5 user=tessera dbname=x_1"
    );
    assert_eq!(pg::dbname_of(&pg::with_dbname(kv, "x_1")), "x_1");
    assert_eq!(pg::with_dbname("host=h", "d"), "host=h dbname=d");
    let uri = "postgres://tessera@127.0.0.1:5/tessera?connect_timeout=2";
    assert_eq!(
        pg::with_dbname(uri, "d"),
        "postgres://tessera@127.0.0.1:5/d?connect_timeout=2"
    );
    assert_eq!(pg::dbname_of(uri), "tessera");
    assert_eq!(pg::literal("it's"), "'it''s'");
}

#[test]
fn cluster_fresh_database_pause_resume_restart_terminate() {
    let Some(db) = pg::fresh_database("pg_support") else {
        pg::skip("cluster_fresh_database_pause_resume_restart_terminate");
        return;
    };
    let other = pg::fresh_database("pg_support").unwrap();
    assert_ne!(pg::dbname_of(&db), pg::dbname_of(&other));
    assert_eq!(pg::psql(&db, "SELECT 1"), "1");
    assert_eq!(
        pg::psql(&db, "SELECT current_database()"),
        pg::dbname_of(&db)
    );
    pg::psql(
        &db,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')",
    );

    // terminate_backends: a session of the right application_name is cut, others are not.
    let victim = Command::new(pg::psql_bin())
        .args(["-X", "-A", "-t", "-d"])
        .arg(format!("{db} application_name=pg_support_victim"))
        .args(["-c", "SELECT pg_sleep(60)"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let victim_seen = "SELECT count(*) FROM pg_stat_activity \
                       WHERE application_name = 'pg_support_victim'";
    wait_for(
        || pg::psql(&db, victim_seen) == "1",
        "the victim session to connect",
    );
    assert_eq!(pg::terminate_backends(&db, Some("nobody%")), 0);
    assert_eq!(pg::terminate_backends(&other, None), 0);
    assert_eq!(pg::terminate_backends(&db, Some("pg_support_vic%")), 1);
    let status = wait_child(victim, Duration::from_secs(10));
    assert!(
        !status.success(),
        "the terminated psql should fail, got {status}"
    );

    // pause: connections hang (the TCP connect itself succeeds); resume: they answer again.
    {
        let _paused = pg::paused();
        let started = Instant::now();
        let status = Command::new("timeout")
            .arg("3")
            .arg(pg::psql_bin())
            .args(["-X", "-A", "-t", "-d", &db, "-c", "SELECT 1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(
            status.code(),
            Some(124),
            "psql should hang on a paused server"
        );
        assert!(started.elapsed() >= Duration::from_millis(2900));
    }
    assert_eq!(pg::psql(&db, "SELECT 1"), "1");

    // restart: the server answers again, with the committed data.
    pg::restart();
    assert_eq!(pg::psql(&db, "SELECT v FROM t"), "kept");
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_child(mut child: std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            panic!("the child did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
