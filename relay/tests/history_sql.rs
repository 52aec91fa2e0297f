//! History and SQL: a known set of flows is ingested (part written to Parquet,
//! part still in memory), then the golden queries under `tests/golden/` must
//! answer exactly their `.out` (`BLESS=1` rewrites them); refused statements,
//! limits, restarts, crashed writers and retention are checked too.

mod common;

use test_support::history_flows as flows;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{config, engine, ingest, scratch, table};
use relay::history::{History, HistoryConfig, files};
use relay::sql::{SqlEngine, SqlError, SqlLimits};

/// The golden flows: all but the last two flushed to files, those in memory.
fn ingest_golden(dir: &Path) -> Arc<History> {
    ingest(dir, flows::golden(), 2)
}

async fn check_golden(engine: &SqlEngine) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "golden queries: {names:?}");
    for sql_path in names {
        let sql = std::fs::read_to_string(&sql_path).unwrap();
        let got = table(engine, &sql).await + "\n";
        let out = sql_path.with_extension("out");
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&out, &got).unwrap();
        }
        let want = std::fs::read_to_string(&out).unwrap_or_default();
        assert_eq!(got, want, "{}", sql_path.display());
    }
}

#[tokio::test]
async fn golden_queries_answer_exactly_from_files_and_memory() {
    let dir = scratch("golden");
    let h = ingest_golden(&dir);
    // The first seven rows are in one file (hour 10); the rest is in memory.
    assert_eq!(files::list(&dir).unwrap().len(), 1);
    check_golden(&engine(&h)).await;
    h.flush().unwrap();
    // The second flush: one more row of hour 10 and one of hour 11.
    assert_eq!(files::list(&dir).unwrap().len(), 3);
    assert!(
        dir.join("date=2024-05-01/hour=11").is_dir(),
        "partitioned by hour"
    );
    check_golden(&engine(&h)).await;
}

/// Every row of a connection repeats its running totals: the golden top
/// talkers query counts the connection once, for the address that opened it
/// (a plain sum over the rows would say 15,656 bytes for 10.0.0.1 and 296
/// for 10.0.0.2, which opened nothing).
#[tokio::test]
async fn top_talkers_count_each_connection_once() {
    let dir = scratch("top-talkers");
    let e = engine(&ingest(&dir, flows::one_connection_many_rows(), 3));
    let sql = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/top_talkers.sql"),
    )
    .unwrap();
    let want = "+-----------+-------+\n\
                | source_ip | bytes |\n\
                +-----------+-------+\n\
                | 10.0.0.1  | 3910  |\n\
                +-----------+-------+";
    assert_eq!(table(&e, &sql).await, want);
    let naive = "SELECT source_ip, sum(fwd_bytes + rev_bytes) AS bytes FROM flows \
                 GROUP BY 1 ORDER BY 1";
    let naive_want = "+-----------+-------+\n\
                      | source_ip | bytes |\n\
                      +-----------+-------+\n\
                      | 10.0.0.1  | 15656 |\n\
                      | 10.0.0.2  | 296   |\n\
                      +-----------+-------+";
    assert_eq!(table(&e, naive).await, naive_want);
}

#[tokio::test]
async fn a_restarted_relay_still_answers_from_its_files() {
    let dir = scratch("restart");
    let h = ingest_golden(&dir);
    h.flush().unwrap();
    drop(h);
    let again = History::open(config(&dir)).unwrap();
    check_golden(&engine(&again)).await;
}

#[tokio::test]
async fn a_crashed_writers_file_is_never_read_and_is_cleaned_at_start() {
    let dir = scratch("crash");
    let h = ingest_golden(&dir);
    h.flush().unwrap();
    let real = &files::list(&dir).unwrap()[0];
    let bytes = std::fs::read(&real.path).unwrap();
    let leftover = real
        .path
        .parent()
        .unwrap()
        .join(".0000000000000000001-0000000000000000002-000009.parquet.tmp");
    std::fs::write(&leftover, &bytes[..bytes.len() / 2]).unwrap();
    let count = "SELECT count(*) AS n FROM flows";
    let want = "+---+\n| n |\n+---+\n| 9 |\n+---+";
    assert_eq!(table(&engine(&h), count).await, want);
    drop(h);
    let again = History::open(config(&dir)).unwrap();
    assert!(!leftover.exists(), "removed at start");
    assert_eq!(table(&engine(&again), count).await, want);
}

#[tokio::test]
async fn a_file_damaged_after_start_is_a_history_error_not_the_querys() {
    let dir = scratch("damaged");
    let h = ingest_golden(&dir);
    h.flush().unwrap();
    let real = &files::list(&dir).unwrap()[0];
    // Cut short in place, behind the relay's back (a disk fault, a hand).
    let bytes = std::fs::read(&real.path).unwrap();
    std::fs::write(&real.path, &bytes[..bytes.len() / 2]).unwrap();
    let err = engine(&h)
        .query("SELECT sum(length(uuid)) AS n FROM flows")
        .await
        .unwrap_err();
    // Not the query's fault: INTERNAL over Flight SQL, not INVALID_ARGUMENT.
    assert_eq!(
        err.to_string(),
        "reading history: Parquet error: Invalid Parquet file. Corrupt footer"
    );
    assert_eq!(
        relay::sql::flight::status(err).code(),
        tonic::Code::Internal
    );
}

#[tokio::test]
async fn a_truncated_or_foreign_file_is_moved_aside_at_start_and_the_rest_answers() {
    use datafusion::arrow::array::{Int64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::parquet::arrow::ArrowWriter;

    let dir = scratch("quarantine");
    let h = ingest_golden(&dir);
    h.flush().unwrap();
    let real = files::list(&dir).unwrap()[0].clone();
    let hour = real.path.parent().unwrap().to_path_buf();
    drop(h);
    // Half of a real file, and a Parquet file of other columns, both named
    // as history files with sequence numbers far above the real ones.
    let bytes = std::fs::read(&real.path).unwrap();
    let truncated = hour.join(format!("{}-{}-900001.parquet", real.first, real.last));
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(TimestampNanosecondArray::from(vec![real.first; 3]).with_timezone("UTC")),
        ],
    )
    .unwrap();
    let foreign = hour.join(format!("{}-{}-900010.parquet", real.first, real.first));
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&foreign).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    // History's column names, one of another type: it could not be read.
    let schema = Arc::new(Schema::new(vec![
        Field::new("node", DataType::Int64, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).unwrap();
    let typed = hour.join(format!("{}-{}-900020.parquet", real.first, real.first));
    let mut w = ArrowWriter::try_new(std::fs::File::create(&typed).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    assert_eq!(
        relay::history::schema::check_file(&typed).unwrap_err(),
        "its node column is Int64, not Utf8"
    );

    let again = History::open(config(&dir)).unwrap();
    let count = "SELECT count(*) AS n FROM flows";
    assert_eq!(
        table(&engine(&again), count).await,
        "+---+\n| n |\n+---+\n| 9 |\n+---+",
        "the real flows, and only they"
    );
    for moved in [&truncated, &foreign, &typed] {
        let to = dir
            .join(files::QUARANTINE)
            .join(moved.strip_prefix(&dir).unwrap());
        assert!(
            !moved.exists() && to.exists(),
            "{} moved to {}",
            moved.display(),
            to.display()
        );
    }
    // Their sequence numbers are no history's: the next file follows the real ones.
    again.ingest(Arc::new(flows::response(flows::golden()[0].clone())));
    again.flush().unwrap();
    let highest = files::list(&dir)
        .unwrap()
        .iter()
        .map(|f| f.hi)
        .max()
        .unwrap();
    assert!(highest < 900_000, "{highest}");
}

#[tokio::test]
async fn writes_and_other_tables_are_refused_with_the_reason() {
    let dir = scratch("refused");
    let e = engine(&ingest_golden(&dir));
    let cases = [
        ("COPY flows TO '/tmp/x.csv'", "COPY is not allowed"),
        (
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "CREATE EXTERNAL TABLE is not allowed",
        ),
        ("INSERT INTO flows VALUES (1)", "INSERT is not allowed"),
        // Writes that parse as queries.
        ("SELECT * INTO t FROM flows", "SELECT INTO is not allowed"),
        (
            "WITH x AS (SELECT 1) INSERT INTO flows SELECT * FROM flows",
            "INSERT is not allowed",
        ),
        (
            "EXPLAIN WITH x AS (SELECT 1) DELETE FROM flows",
            "DELETE is not allowed",
        ),
        (
            "SELECT 1 UNION ALL (SELECT 2 INTO t)",
            "SELECT INTO is not allowed",
        ),
        ("DROP TABLE flows", "DROP is not allowed"),
        ("CREATE TABLE t AS SELECT 1", "CREATE is not allowed"),
        (
            "SET datafusion.execution.batch_size = 1",
            "SET is not allowed",
        ),
        ("SELECT * FROM '/etc/passwd'", "not `/etc/passwd`"),
        ("SELECT * FROM read_csv('/etc/passwd')", "not `read_csv`"),
        ("SELECT * FROM other", "not `other`"),
        ("SELECT 1; SELECT 2", "one statement at a time"),
        (
            "EXPLAIN COPY flows TO '/tmp/x'",
            "EXPLAIN of anything but a query",
        ),
    ];
    for (sql, want) in cases {
        let err = e.query(sql).await.unwrap_err();
        assert!(matches!(err, SqlError::Refused(_)), "{sql}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(want), "{sql}: {msg}");
        if want.ends_with("not allowed") {
            assert!(msg.contains("read-only"), "{msg}");
        }
    }
    // Reads still run, also EXPLAIN and WITH.
    assert!(e.query("EXPLAIN SELECT count(*) FROM flows").await.is_ok());
    assert!(
        e.query("WITH x AS (SELECT * FROM flows) SELECT count(*) FROM x")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_unknown_column_lists_the_columns_that_exist() {
    let dir = scratch("unknown");
    let e = engine(&ingest_golden(&dir));
    let err = e.query("SELECT bytes FROM flows").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("unknown column `bytes`; the columns of `flows` are: time, node, uuid,"),
        "{msg}"
    );
    assert!(
        msg.ends_with("summary, source_cluster, destination_cluster, node_labels"),
        "{msg}"
    );
    // A query's own relation: its columns, not flows'.
    let err = e
        .query("WITH x AS (SELECT 1 AS n, 'a' AS m) SELECT nn FROM x")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown column `nn`; the columns of `x` are: n, m"
    );
    let err = e.query("SELECT nn FROM (SELECT 1 AS n)").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown column `nn`; the columns of `(subquery)` are: n"
    );
}

/// The `name` column of `sql`'s answer, row by row.
async fn column(e: &SqlEngine, sql: &str, name: &str) -> Vec<String> {
    let r = e.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in &r.batches {
        let c = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("{sql}: no {name}"));
        let c = datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Utf8)
            .unwrap();
        let c = c
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        out.extend(c.iter().map(|v| v.unwrap_or("NULL").to_string()));
    }
    out
}

/// What there is to read, asked as SQL users ask: SHOW TABLES, DESCRIBE,
/// SHOW COLUMNS and `information_schema`; DataFusion's settings stay shut.
#[tokio::test]
async fn the_tables_and_their_columns_can_be_listed() {
    let dir = scratch("describe");
    let e = engine(&ingest_golden(&dir));
    let public = ["flows", "graph_edges", "graph_nodes", "policy_states"];
    let names = column(
        &e,
        "SELECT table_name FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY table_name",
        "table_name",
    )
    .await;
    assert_eq!(names, public);
    // Only what a query may read: not df_settings, routines or parameters.
    let shown = e.query("SHOW TABLES").await.unwrap();
    let mut listed = Vec::new();
    for b in &shown.batches {
        let cols = ["table_catalog", "table_schema", "table_name"].map(|n| {
            datafusion::arrow::array::cast::as_string_array(b.column_by_name(n).unwrap()).clone()
        });
        for i in 0..b.num_rows() {
            listed.push(format!(
                "{}.{}.{}",
                cols[0].value(i),
                cols[1].value(i),
                cols[2].value(i)
            ));
        }
    }
    assert_eq!(
        listed,
        [
            "observe.information_schema.columns",
            "observe.information_schema.schemata",
            "observe.information_schema.tables",
            "observe.information_schema.views",
            "observe.public.flows",
            "observe.public.graph_edges",
            "observe.public.graph_nodes",
            "observe.public.policy_states",
        ]
    );

    let fields: Vec<String> = relay::history::schema::schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(column(&e, "DESCRIBE flows", "column_name").await, fields);
    assert_eq!(
        column(&e, "SHOW COLUMNS FROM flows", "column_name").await,
        fields
    );
    let bytes = column(
        &e,
        "SELECT data_type FROM information_schema.columns \
         WHERE table_name = 'graph_edges' AND column_name = 'secondarystat'",
        "data_type",
    )
    .await;
    assert_eq!(bytes, ["UInt64"]);

    for (sql, want) in [
        (
            "SELECT * FROM information_schema.df_settings",
            "not `information_schema.df_settings`",
        ),
        ("SHOW ALL", "SHOW is not allowed"),
        ("DESCRIBE other", "not `other`"),
        (
            "DESCRIBE information_schema.df_settings",
            "not `information_schema.df_settings`",
        ),
        (
            "SHOW TABLES FROM information_schema",
            "SHOW TABLES takes no FROM",
        ),
    ] {
        let err = e.query(sql).await.unwrap_err();
        assert!(matches!(err, SqlError::Refused(_)), "{sql}: {err:?}");
        assert!(err.to_string().contains(want), "{sql}: {err}");
    }
}

/// `now()` is in UTC, as `time` is: one type to compare, printed with its Z.
#[tokio::test]
async fn now_is_utc_as_flow_times_are() {
    let dir = scratch("now-utc");
    let e = engine(&ingest_golden(&dir));
    assert_eq!(
        column(
            &e,
            "SELECT arrow_typeof(now()) AS t, arrow_typeof(time) AS f FROM flows LIMIT 1",
            "t"
        )
        .await,
        column(&e, "SELECT arrow_typeof(time) AS f FROM flows LIMIT 1", "f").await,
    );
    let err = e.query("SELECT [1, 2] AS a").await.unwrap_err();
    assert!(
        err.to_string().starts_with("arrays and maps (`[1, 2]`"),
        "{err}"
    );
    let day = column(&e, "SELECT date_trunc('day', now()) AS d", "d").await;
    assert!(day[0].ends_with("T00:00:00Z"), "{day:?}");
    // Every golden flow is older than now.
    assert_eq!(
        column(
            &e,
            "SELECT count(*) AS n FROM flows WHERE time < now() - INTERVAL '1 day'",
            "n"
        )
        .await,
        ["9"]
    );
}

/// DataFusion's words for a LIMIT past i64 and for count(*) over a
/// recursive CTE (its bug) say what to do instead.
#[tokio::test]
async fn a_huge_limit_and_a_recursive_count_star_say_what_is_wrong() {
    let dir = scratch("huge-limit");
    let e = engine(&ingest_golden(&dir));
    let err = async |sql: &str| e.query(sql).await.unwrap_err().to_string();
    assert_eq!(
        err("SELECT node FROM flows LIMIT 99999999999999999999").await,
        "LIMIT is too large: at most 9223372036854775807 rows"
    );
    assert_eq!(
        err("SELECT node FROM flows LIMIT 18446744073709551615").await,
        "Arrow error: Cast error: Can't cast value 18446744073709551615 to type Int64: a whole \
         number there holds at most 9223372036854775807"
    );
    let recursive = "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 5)";
    let count_star = err(&format!("{recursive} SELECT count(*) FROM r")).await;
    assert!(
        count_star.ends_with(
            "(DataFusion cannot run count(*) over a recursive CTE: count a column instead, \
             such as count(n))"
        ),
        "{count_star}"
    );
    let counted = column(&e, &format!("{recursive} SELECT count(n) AS c FROM r"), "c").await;
    assert_eq!(counted, ["5"]);
}

/// SQL's string functions users reach for first, standard forms included.
#[tokio::test]
async fn standard_string_functions_answer() {
    let dir = scratch("string-functions");
    let e = engine(&ingest_golden(&dir));
    let got = table(
        &e,
        "SELECT substr('observe', 1, 3) AS a, substring('observe' FROM 4 FOR 2) AS b, \
         character_length('flow') AS c, strpos('a.b.c', '.') AS d, lpad('7', 3, '0') AS e, \
         right('pod-1', 1) AS f, reverse('ab') AS g",
    )
    .await;
    assert_eq!(
        got,
        "+-----+----+---+---+-----+---+----+\n\
         | a   | b  | c | d | e   | f | g  |\n\
         +-----+----+---+---+-----+---+----+\n\
         | obs | er | 4 | 2 | 007 | 1 | ba |\n\
         +-----+----+---+---+-----+---+----+"
    );
}

/// 300 flows: a cross join sorted needs far more than 1 MiB.
fn many(dir: &Path) -> Arc<History> {
    let h = History::open(config(dir)).unwrap();
    let base = flows::golden().remove(0);
    for i in 0..300 {
        let mut f = base.clone();
        f.summary = format!("a fairly long summary of flow number {i:05}");
        f.uuid = format!("uuid-{i:05}");
        h.ingest(Arc::new(flows::response(f)));
    }
    h
}

const HEAVY: &str =
    "SELECT a.summary, b.summary FROM flows a CROSS JOIN flows b ORDER BY a.summary, b.uuid DESC";

#[tokio::test]
async fn a_query_over_its_memory_limit_fails_and_the_next_one_runs() {
    let dir = scratch("memory");
    let h = many(&dir);
    let e = SqlEngine::new(
        Some(h.clone()),
        SqlLimits {
            memory_bytes: 1 << 20,
            ..SqlLimits::default()
        },
    );
    let err = e.query(HEAVY).await.unwrap_err();
    assert!(matches!(err, SqlError::Memory { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("the query ran out of its memory limit of 1048576 bytes"),
        "{err}"
    );
    let want = "+-----+\n| n   |\n+-----+\n| 300 |\n+-----+";
    assert_eq!(table(&e, "SELECT count(*) AS n FROM flows").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_its_time_limit_fails() {
    let dir = scratch("timeout");
    let h = many(&dir);
    let e = SqlEngine::new(
        Some(h),
        SqlLimits {
            timeout: Duration::from_millis(1),
            ..SqlLimits::default()
        },
    );
    let err = e.query(HEAVY).await.unwrap_err();
    assert_eq!(err, SqlError::Timeout(Duration::from_millis(1)));
}

#[test]
fn retention_deletes_by_age_then_the_oldest_past_the_size() {
    let dir = scratch("retention");
    let keep_all = HistoryConfig {
        retention_age: Duration::from_secs(100 * 365 * 86_400),
        retention_bytes: u64::MAX,
        ..HistoryConfig::new(&dir)
    };
    let h = History::open(keep_all.clone()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // One file each: three hours ago, two hours ago, now.
    for age in [3 * 3600 + 60, 2 * 3600 + 60, 0] {
        let mut f = flows::golden().remove(0);
        f.time = Some(prost_types::Timestamp {
            seconds: now - age,
            nanos: 0,
        });
        h.ingest(Arc::new(flows::response(f)));
        h.flush().unwrap();
    }
    let all = files::list(&dir).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(h.files(), all);
    drop(h);
    // Retention applies at start (and after every write).
    let by_age = HistoryConfig {
        retention_age: Duration::from_secs(3 * 3600),
        ..keep_all.clone()
    };
    let h = History::open(by_age.clone()).unwrap();
    assert_eq!(
        files::list(&dir).unwrap(),
        all[1..],
        "by age: the one older than 3h"
    );
    assert_eq!(h.files(), all[1..]);
    drop(h);
    let by_size = HistoryConfig {
        retention_bytes: all[2].bytes,
        ..by_age
    };
    let h = History::open(by_size).unwrap();
    assert_eq!(
        files::list(&dir).unwrap(),
        all[2..],
        "by size: the oldest left"
    );
    assert_eq!(h.files(), all[2..]);
}
