"""A Flight SQL client that is not ours: the ADBC Flight SQL driver (PyPI
`adbc-driver-flightsql`) against the relay at argv[1] (grpc://HOST:PORT).

Prints one JSON object: what the driver reads of the server (GetSqlInfo), the
tables it lists (GetCatalogs, GetDbSchemas, GetTables), the flows table's
schema (GetTables with schemas), the parameter schema of a prepared
statement (CreatePreparedStatement), the rows of that statement run with
a bound parameter (DoPut of the value, GetFlightInfo, DoGet), and a query's
schema without running it (GetSchema). The e2e test compares them with what
`observe query` answers."""

import json
import sys

import adbc_driver_flightsql.dbapi as flightsql

QUERY = "SELECT uuid, destination_port FROM flows WHERE destination_port = ? ORDER BY uuid"


def main() -> None:
    uri = sys.argv[1]
    port = int(sys.argv[2])
    with flightsql.connect(uri) as conn:
        info = conn.adbc_get_info()
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        tables = sorted(
            (catalog["catalog_name"], schema["db_schema_name"], table["table_name"], table["table_type"])
            for catalog in objects
            for schema in catalog["catalog_db_schemas"] or []
            for table in schema["db_schema_tables"] or []
        )
        flows = conn.adbc_get_table_schema("flows", catalog_filter="observe", db_schema_filter="public")
        with conn.cursor() as cur:
            parameters = cur.adbc_prepare(QUERY)
            cur.execute(QUERY, parameters=(port,))
            rows = cur.fetch_arrow_table().to_pylist()
        with conn.cursor() as cur:
            planned = cur.adbc_execute_schema("SELECT destination_port AS port, uuid FROM flows")
    print(
        json.dumps(
            {
                "vendor_name": info.get("vendor_name"),
                "vendor_version": info.get("vendor_version"),
                "tables": tables,
                "flows_columns": [[f.name, str(f.type)] for f in flows],
                "parameters": [[f.name, str(f.type)] for f in parameters] if parameters else None,
                "rows": rows,
                "execute_schema": [[f.name, str(f.type)] for f in planned],
            }
        )
    )


if __name__ == "__main__":
    main()
