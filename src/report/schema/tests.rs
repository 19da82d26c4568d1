//! Unit tests of the `raw.csv` schema: columns, appending, and refusing other files.

use super::*;

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tickcast-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn serde_columns_match_the_documented_columns() {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(Row::default()).unwrap();
    let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
    assert_eq!(text.lines().next().unwrap(), header());
}

#[test]
fn append_writes_the_header_once_and_rows_round_trip() {
    let p = temp_path("rows.csv");
    let a = Row {
        mode: "tickcast".into(),
        clients: 1000,
        server_cpu_pct: Some(55.5),
        failure_reasons: "refused=2;timeout=1".into(),
        ..Row::default()
    };
    let b = Row {
        mode: "baseline".into(),
        sustainable: true,
        ..Row::default()
    };
    append_row(&p, &a).unwrap();
    append_row(&p, &b).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text.matches("unix_time,").count(), 1);
    assert_eq!(read_rows(&p).unwrap(), vec![a, b]);
}

#[test]
fn a_file_with_another_header_is_refused() {
    let p = temp_path("other.csv");
    std::fs::write(&p, "a,b,c\n1,2,3\n").unwrap();
    assert!(append_row(&p, &Row::default()).is_err());
    let err = check_appendable(&p).unwrap_err();
    assert!(err.contains("another header"), "{err}");
}

#[test]
fn the_output_is_checked_before_a_run() {
    let p = temp_path("new.csv");
    check_appendable(&p).unwrap();
    assert!(!p.exists(), "the check leaves no file behind");
    append_row(&p, &Row::default()).unwrap();
    check_appendable(&p).unwrap();
    let nowhere = p.with_file_name("no-such-folder").join("raw.csv");
    let err = check_appendable(&nowhere).unwrap_err();
    assert!(
        err.contains("no-such-folder") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn files_that_are_not_results_are_refused_naming_what_they_lack() {
    let p = temp_path("not-results.csv");
    std::fs::write(&p, "a,b\n1,2\n").unwrap();
    let err = read_rows(&p).unwrap_err().to_string();
    assert!(err.contains("not a results file"), "{err}");
    assert!(
        err.contains("unix_time") && err.contains("delivery_ratio"),
        "{err}"
    );
    // A header alone is no report either; nor is an empty file.
    std::fs::write(&p, "a,b\n").unwrap();
    assert!(read_rows(&p).unwrap_err().to_string().contains("unix_time"));
    std::fs::write(&p, format!("{}\n", header())).unwrap();
    assert!(read_rows(&p).unwrap_err().to_string().contains("no rows"));
    std::fs::write(&p, "").unwrap();
    assert!(read_rows(&p).unwrap_err().to_string().contains("empty"));
    // One column short: named.
    let cols: Vec<&str> = COLUMNS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != "messages")
        .collect();
    assert_eq!(missing_columns(cols.iter().copied()), vec!["messages"]);
}

#[test]
fn the_columns_that_may_be_absent_are_those_a_row_can_be_read_without() {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(Row::default()).unwrap();
    let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
    let mut lines = text.lines();
    let (names, cells) = (lines.next().unwrap(), lines.next().unwrap());
    let names: Vec<&str> = names.split(',').collect();
    let cells: Vec<&str> = cells.split(',').collect();
    for (i, name) in names.iter().enumerate() {
        let keep = |v: &[&str]| {
            v.iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, c)| *c)
                .collect::<Vec<_>>()
                .join(",")
        };
        let csv = format!("{}\n{}\n", keep(&names), keep(&cells));
        let readable = csv::Reader::from_reader(csv.as_bytes())
            .deserialize::<Row>()
            .all(|r| r.is_ok());
        assert_eq!(
            readable,
            MAY_BE_ABSENT.contains(name),
            "column `{name}`: readable without it = {readable}"
        );
    }
}
