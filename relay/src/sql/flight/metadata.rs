//! What a Flight SQL client asks before it queries: the server's SqlInfo,
//! the one catalog (`observe`) and schema (`public`), the tables with their
//! Arrow schemas, the table types, and the SQL types (XDBC type info), each
//! built with arrow-flight's `sql::metadata` builders (which apply the
//! client's catalog, schema, table-name and type filters). No table has a
//! primary or foreign key: those requests (a JDBC client's
//! `getPrimaryKeys`, `getImportedKeys`, …) answer no rows, in the
//! protocol's schemas ([`primary_keys_schema`], [`foreign_keys_schema`]).

use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData,
    XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, Nullable,
    Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity, SqlSupportedTransaction,
    XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tonic::Status;

use crate::history::schema;
use crate::sql::graph::rows::Rows;
use crate::sql::{SqlLimits, guard, policy_states, shape};

/// A table as clients list it.
pub struct Table {
    pub name: &'static str,
    /// `TABLE` or `VIEW`.
    pub kind: &'static str,
    pub schema: SchemaRef,
}

/// The table types there are.
pub const TABLE_TYPES: [&str; 2] = ["TABLE", "VIEW"];

/// `flows`, then the graph tables (built from it: views), then
/// `policy_states`. The what-if's table functions are not tables.
pub fn tables() -> Vec<Table> {
    let mut tables = vec![Table {
        name: guard::FLOWS,
        kind: "TABLE",
        schema: schema::schema(),
    }];
    tables.extend([Rows::Nodes, Rows::Edges].map(|r| Table {
        name: r.name(),
        kind: "VIEW",
        schema: r.schema(),
    }));
    tables.push(Table {
        name: policy_states::TABLE,
        kind: "TABLE",
        schema: policy_states::schema(),
    });
    tables
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// The longest catalog, schema or table-name filter a client may send: a
/// pattern becomes a regular expression, parsed whole before any size
/// limit of the regex applies.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// The most table types a GetTables may name (there are two).
pub const MAX_TABLE_TYPES: usize = 16;
/// The most distinct SqlInfo ids a GetSqlInfo may ask for: the builder
/// keeps a column per id, so four million ids in a 4 MiB message took about
/// a gigabyte no pool counts.
pub const MAX_SQL_INFO_IDS: usize = 1024;

fn check_pattern(what: &str, pattern: Option<&String>) -> Result<(), Status> {
    match pattern {
        Some(p) if p.len() > MAX_PATTERN_BYTES => Err(Status::invalid_argument(format!(
            "the {what} is {} bytes; at most {MAX_PATTERN_BYTES} are taken",
            p.len()
        ))),
        _ => Ok(()),
    }
}

/// Refuses a GetDbSchemas whose filters are past the limits above.
pub fn check_schemas(query: &CommandGetDbSchemas) -> Result<(), Status> {
    check_pattern("catalog", query.catalog.as_ref())?;
    check_pattern(
        "schema filter pattern",
        query.db_schema_filter_pattern.as_ref(),
    )
}

/// Refuses a GetTables whose filters are past the limits above.
pub fn check_tables(query: &CommandGetTables) -> Result<(), Status> {
    check_pattern("catalog", query.catalog.as_ref())?;
    check_pattern(
        "schema filter pattern",
        query.db_schema_filter_pattern.as_ref(),
    )?;
    check_pattern(
        "table name filter pattern",
        query.table_name_filter_pattern.as_ref(),
    )?;
    if query.table_types.len() > MAX_TABLE_TYPES {
        return Err(Status::invalid_argument(format!(
            "{} table types asked for; at most {MAX_TABLE_TYPES} are taken (there are {})",
            query.table_types.len(),
            TABLE_TYPES.join(" and ")
        )));
    }
    Ok(())
}

/// The ids of a GetSqlInfo once each, refused past [`MAX_SQL_INFO_IDS`].
pub fn check_sql_info(mut query: CommandGetSqlInfo) -> Result<CommandGetSqlInfo, Status> {
    query.info.sort_unstable();
    query.info.dedup();
    if query.info.len() > MAX_SQL_INFO_IDS {
        return Err(Status::invalid_argument(format!(
            "{} distinct SqlInfo ids asked for; at most {MAX_SQL_INFO_IDS} are taken",
            query.info.len()
        )));
    }
    Ok(query)
}

/// Refuses a keys request that names no table (the protocol requires one);
/// `what` names the field.
pub fn check_key_table(what: &str, table: &str) -> Result<(), Status> {
    if table.is_empty() {
        return Err(Status::invalid_argument(format!(
            "the {what} is empty: name a table, e.g. {}",
            guard::FLOWS
        )));
    }
    check_pattern(what, Some(&table.to_string()))
}

/// GetPrimaryKeys' answer, as the protocol gives it.
pub fn primary_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    std::sync::Arc::new(Schema::new(vec![
        text("catalog_name", true),
        text("db_schema_name", true),
        text("table_name", false),
        text("column_name", false),
        text("key_name", true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The answer of GetExportedKeys, GetImportedKeys and GetCrossReference, as
/// the protocol gives it.
pub fn foreign_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    std::sync::Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

pub fn catalogs() -> Result<RecordBatch, Status> {
    let mut b = GetCatalogsBuilder::new();
    b.append(guard::CATALOG);
    b.build().map_err(internal)
}

pub fn schemas(query: CommandGetDbSchemas) -> Result<RecordBatch, Status> {
    check_schemas(&query)?;
    let mut b = query.into_builder();
    b.append(guard::CATALOG, guard::SCHEMA);
    b.build().map_err(internal)
}

pub fn tables_batch(query: CommandGetTables) -> Result<RecordBatch, Status> {
    check_tables(&query)?;
    let mut b = query.into_builder();
    for t in tables() {
        b.append(guard::CATALOG, guard::SCHEMA, t.name, t.kind, &t.schema)
            .map_err(internal)?;
    }
    b.build().map_err(internal)
}

pub fn table_types(query: CommandGetTableTypes) -> Result<RecordBatch, Status> {
    let mut b = query.into_builder();
    for t in TABLE_TYPES {
        b.append(t);
    }
    b.build().map_err(internal)
}

/// The server's answers to GetSqlInfo.
pub fn sql_info(limits: &SqlLimits) -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "observe relay");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The workspace's arrow, which arrow-flight must match.
    b.append(SqlInfo::FlightSqlServerArrowVersion, "58");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    let timeout_ms = i32::try_from(limits.timeout.as_millis()).unwrap_or(i32::MAX);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, timeout_ms);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(
        SqlInfo::SqlMaxStatementLength,
        i64::try_from(shape::MAX_STATEMENT_BYTES).unwrap_or(i64::MAX),
    );
    b.build().map_err(internal)
}

/// One SQL type as XDBC describes it.
fn xdbc(name: &str, data_type: XdbcDataType, size: Option<i32>, unsigned: bool) -> XdbcTypeInfo {
    let text = matches!(data_type, XdbcDataType::XdbcVarchar);
    let time = matches!(data_type, XdbcDataType::XdbcTimestamp);
    XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size: size,
        literal_prefix: (text || time).then(|| "'".into()),
        literal_suffix: (text || time).then(|| "'".into()),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: text,
        searchable: Searchable::Full,
        unsigned_attribute: (!text && !time).then_some(unsigned),
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: time.then_some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        num_prec_radix: (!text && !time).then_some(10),
        interval_precision: None,
    }
}

/// The SQL types of the relay's tables and of what queries compute.
pub fn xdbc_types() -> Result<XdbcTypeInfoData, Status> {
    let mut b = XdbcTypeInfoDataBuilder::new();
    for info in [
        xdbc("BOOLEAN", XdbcDataType::XdbcBit, Some(1), false),
        xdbc("TINYINT UNSIGNED", XdbcDataType::XdbcTinyint, Some(3), true),
        xdbc("SMALLINT", XdbcDataType::XdbcSmallint, Some(5), false),
        xdbc("INTEGER", XdbcDataType::XdbcInteger, Some(10), false),
        xdbc(
            "INTEGER UNSIGNED",
            XdbcDataType::XdbcInteger,
            Some(10),
            true,
        ),
        xdbc("BIGINT", XdbcDataType::XdbcBigint, Some(19), false),
        xdbc("BIGINT UNSIGNED", XdbcDataType::XdbcBigint, Some(20), true),
        xdbc("DOUBLE", XdbcDataType::XdbcDouble, Some(15), false),
        xdbc("VARCHAR", XdbcDataType::XdbcVarchar, None, false),
        xdbc("TIMESTAMP", XdbcDataType::XdbcTimestamp, Some(35), false),
    ] {
        b.append(info);
    }
    b.build().map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_past_their_limits_are_refused_by_name() {
        let tables = |f: fn(&mut CommandGetTables)| {
            let mut q = CommandGetTables::default();
            f(&mut q);
            check_tables(&q).map_err(|s| (s.code(), s.message().to_string()))
        };
        assert_eq!(
            tables(|q| q.table_name_filter_pattern = Some("graph%".into())),
            Ok(())
        );
        assert_eq!(
            tables(|q| q.table_name_filter_pattern = Some("%".repeat(2048))),
            Err((
                tonic::Code::InvalidArgument,
                "the table name filter pattern is 2048 bytes; at most 1024 are taken".into()
            ))
        );
        assert_eq!(
            tables(|q| q.table_types = vec!["VIEW".into(); 17]),
            Err((
                tonic::Code::InvalidArgument,
                "17 table types asked for; at most 16 are taken (there are TABLE and VIEW)".into()
            ))
        );
        let schemas = CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: Some("p".repeat(1025)),
        };
        assert_eq!(
            check_schemas(&schemas).unwrap_err().message(),
            "the schema filter pattern is 1025 bytes; at most 1024 are taken"
        );
        // Ids once each: a repeated id costs nothing more.
        let info = |ids: Vec<u32>| check_sql_info(CommandGetSqlInfo { info: ids });
        assert_eq!(info(vec![3, 1, 3, 1]).unwrap().info, [1, 3]);
        assert_eq!(info(vec![7; 5000]).unwrap().info, [7]);
        assert_eq!(
            info((0..1025).collect()).unwrap_err().message(),
            "1025 distinct SqlInfo ids asked for; at most 1024 are taken"
        );
    }
}
