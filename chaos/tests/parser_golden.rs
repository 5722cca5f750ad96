//! Golden parser errors: every `tests/fixtures/parse-errors/NAME.yaml` must fail to parse
//! with exactly the message in `NAME.expected` (file:line:column: key: message).
//! Regenerate after an intended change with `BLESS=1 cargo test -p bloodraven-chaos --test parser_golden`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn parse_errors_match_their_golden_messages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parse-errors");
    let bless = std::env::var_os("BLESS").is_some();
    let mut checked = 0;
    let mut failures = Vec::new();
    for path in bloodraven_chaos::scenario::discover(&dir).unwrap() {
        // Paths in messages are relative so the golden files do not depend on the checkout.
        let relative = Path::new("tests/fixtures/parse-errors").join(path.file_name().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        let err = match bloodraven_chaos::scenario::parse(&relative, &text) {
            Ok(s) => panic!("{} parsed but must fail: {s:?}", path.display()),
            Err(e) => e.to_string(),
        };
        let golden = path.with_extension("expected");
        if bless {
            std::fs::write(&golden, format!("{err}\n")).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("missing {}; run with BLESS=1", golden.display()));
        if want.trim_end() != err {
            failures.push(format!(
                "{}\n  want: {}\n  got:  {err}",
                path.display(),
                want.trim_end()
            ));
        }
        checked += 1;
    }
    assert!(checked >= 23, "only {checked} golden cases found");
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn valid_scenario_parses_with_defaults() {
    let text = r#"
description: IAD primary crashes; the operator fails over to PDX.
tags: [failover, emergency]
fixture: playground
workload: { counter: { writesPerSecond: 20, cache: true } }
invariants: [single-writer, no-acknowledged-write-lost]
steps:
  - name: kill iad
    fault: {kill-site: iad}
  - assert:
      resource: {kind: MysqlFailoverGroup, name: playground}
      status:
        activeSite: pdx
        sites: [{name: pdx, state: writable}]
      where: ["self.status.lastFailover.durationMs < 60000"]
      within: 90s
      hold: 10s
  - assert: {events: {for: {kind: MysqlFailoverGroup, name: playground}, reason: FailoverSucceeded, type: Normal, message: "iad -> pdx"}, within: 1m}
  - assert: {metric: {name: bloodraven_failovers_total, labels: {kind: emergency}, op: ">=", value: 1}}
  - refute: {resource: {kind: MysqlFailoverGroup, name: playground}, status: {health: SplitBrain}, during: 30s}
  - assert: {workload: {progressing: true, maxWriteUnavailable: 30s}}
  - apply: {file: fixtures/extra.yaml}
  - apply: {apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {a: b}}
  - patch: {resource: {kind: MysqlFailoverGroup, name: playground}, merge: {spec: {failover: {automatic: false}}}}
  - annotate: {resource: {kind: MysqlFailoverGroup, name: playground}, set: {"bloodraven.shipstream.io/planned-failover": pdx}}
  - delete: {kind: ConfigMap, name: c}
  - fault: {partition: {between: [iad, pdx]}}
  - fault: {kill-operator: {}}
  - fault: {replication-delay: {site: pdx, seconds: 30}}
  - wait: 1h30m
finally:
  - fault: {recover: all}
"#;
    use bloodraven_chaos::scenario::*;
    let s = parse(Path::new("scenarios/02-kill-site-iad.yaml"), text).unwrap();
    assert_eq!(s.id, "02-kill-site-iad");
    assert_eq!(s.backends, vec![BackendKind::Sim, BackendKind::K3d]);
    assert_eq!(s.timeout, DEFAULT_TIMEOUT);
    assert_eq!(s.steps.len(), 15);
    assert_eq!(s.steps[0].name.as_deref(), Some("kill iad"));
    assert_eq!(
        s.steps[0].action,
        Action::Fault(Fault::KillSite("iad".into()))
    );
    assert_eq!(s.steps[0].line, 8);
    let Action::Assert(a) = &s.steps[1].action else {
        panic!()
    };
    assert_eq!(a.within.to_string(), "1m30s");
    assert_eq!(a.hold.unwrap().to_string(), "10s");
    let Check::Resource(r) = &a.check else {
        panic!()
    };
    assert_eq!(r.partial["status"]["activeSite"], "pdx");
    assert_eq!(r.where_.len(), 1);
    let Action::Assert(m) = &s.steps[3].action else {
        panic!()
    };
    assert_eq!(m.within, DEFAULT_WITHIN);
    let Action::Refute(r) = &s.steps[4].action else {
        panic!()
    };
    assert_eq!(r.during.unwrap().to_string(), "30s");
    assert_eq!(
        s.steps[6].action,
        Action::Apply(ApplySource::File("fixtures/extra.yaml".into()))
    );
    assert_eq!(s.finally.len(), 1);
    assert_eq!(
        s.invariants,
        vec![Invariant::SingleWriter, Invariant::NoAcknowledgedWriteLost]
    );
    assert!(s.workload.unwrap().counter.cache);
}

#[test]
fn captures_and_references_parse() {
    let text = r#"
description: read a value, then use it
steps:
  - capture:
      resource: {kind: MysqlFailoverGroup, name: playground}
      value: "self.status.sites.filter(s, s.name == 'iad')[0].divergentGtid.split('-')[0]"
      as: token
      within: 30s
  - capture: {resource: {kind: MysqlFailoverGroup, name: playground}, value: "self.status.activeSite", as: active}
  - annotate:
      resource: {kind: MysqlFailoverGroup, name: playground}
      set: {"bloodraven.shipstream.io/reclone-site": "iad:${token}", "note": "costs $5, literally $${token}", "gone": null}
  - assert:
      resource: {kind: MysqlFailoverGroup, name: playground}
      status: {activeSite: "${active}"}
finally:
  - annotate: {resource: {kind: MysqlFailoverGroup, name: playground}, set: {"again": "${token}"}}
"#;
    use bloodraven_chaos::scenario::*;
    use std::collections::BTreeMap;
    let s = parse(Path::new("scenarios/99-capture.yaml"), text).unwrap();
    let Action::Capture(c) = &s.steps[0].action else {
        panic!("{:?}", s.steps[0].action)
    };
    assert_eq!(c.name, "token");
    assert_eq!(c.within.to_string(), "30s");
    assert!(c.value.ends_with(".split('-')[0]"));
    let Action::Capture(c) = &s.steps[1].action else {
        panic!()
    };
    assert_eq!(c.within, DEFAULT_WITHIN);
    assert_eq!(
        s.steps[1].action.summary(),
        "capture active from MysqlFailoverGroup/playground"
    );
    let Action::Annotate(a) = &s.steps[2].action else {
        panic!()
    };
    let captured = BTreeMap::from([
        ("token".to_owned(), "3e11fa47".to_owned()),
        ("active".to_owned(), "pdx".to_owned()),
    ]);
    let rendered: BTreeMap<&str, Option<String>> = a
        .set
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_ref().map(|t| t.render(&captured).unwrap())))
        .collect();
    assert_eq!(
        rendered,
        BTreeMap::from([
            (
                "bloodraven.shipstream.io/reclone-site",
                Some("iad:3e11fa47".to_owned())
            ),
            ("note", Some("costs $5, literally ${token}".to_owned())),
            ("gone", None),
        ])
    );
    assert_eq!(s.finally.len(), 1);
}

#[test]
fn a_missing_fixture_is_a_bad_file_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("99-missing-fixture.yaml");
    std::fs::write(
        &path,
        "description: uses a fixture nobody wrote\nfixture: nosuchfixture\nsteps:\n  - wait: 1s\n",
    )
    .unwrap();
    let err = bloodraven_chaos::scenario::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{}:2:10: fixture: no fixture \"nosuchfixture\"",
            path.display()
        )),
        "{err}"
    );
    std::fs::create_dir(dir.path().join("fixtures")).unwrap();
    std::fs::write(dir.path().join("fixtures/nosuchfixture.yaml"), "{}\n").unwrap();
    bloodraven_chaos::scenario::load(&path).unwrap();
}
