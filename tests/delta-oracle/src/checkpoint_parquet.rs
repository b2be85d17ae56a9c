//! Checkpoint rows (JSON action lines) to Parquet, in the checkpoint schema the kernel reads
//! (delta_kernel 0.30.1, `actions/mod.rs` and `checkpoint/mod.rs`; every field nullable, as Spark writes them).

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Fields, Schema};
use arrow::json::ReaderBuilder;
use parquet::arrow::ArrowWriter;
use serde_json::Value;
use std::sync::{Arc, LazyLock};

fn string() -> DataType {
    DataType::Utf8
}

fn field(name: &str, t: DataType) -> Field {
    Field::new(name, t, true)
}

/// `map<string, string>` the way the kernel names its parts (`key_value`, `key`, `value`).
fn string_map() -> DataType {
    let entries = Fields::from(vec![Field::new("key", string(), false), Field::new("value", string(), true)]);
    DataType::Map(Arc::new(Field::new("key_value", DataType::Struct(entries), false)), false)
}

fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new("element", string(), true)))
}

fn deletion_vector() -> DataType {
    DataType::Struct(Fields::from(vec![
        field("storageType", string()),
        field("pathOrInlineDv", string()),
        field("offset", DataType::Int32),
        field("sizeInBytes", DataType::Int32),
        field("cardinality", DataType::Int64),
    ]))
}

fn add() -> Field {
    field(
        "add",
        DataType::Struct(Fields::from(vec![
            field("path", string()),
            field("partitionValues", string_map()),
            field("size", DataType::Int64),
            field("modificationTime", DataType::Int64),
            field("dataChange", DataType::Boolean),
            field("stats", string()),
            field("tags", string_map()),
            field("deletionVector", deletion_vector()),
            field("baseRowId", DataType::Int64),
            field("defaultRowCommitVersion", DataType::Int64),
            field("clusteringProvider", string()),
        ])),
    )
}

fn remove() -> Field {
    field(
        "remove",
        DataType::Struct(Fields::from(vec![
            field("path", string()),
            field("deletionTimestamp", DataType::Int64),
            field("dataChange", DataType::Boolean),
            field("extendedFileMetadata", DataType::Boolean),
            field("partitionValues", string_map()),
            field("size", DataType::Int64),
            field("stats", string()),
            field("tags", string_map()),
            field("deletionVector", deletion_vector()),
            field("baseRowId", DataType::Int64),
            field("defaultRowCommitVersion", DataType::Int64),
        ])),
    )
}

/// The top-level checkpoint schema (v1 and v2: v1 files simply have no `checkpointMetadata`/`sidecar` rows).
static CHECKPOINT_SCHEMA: LazyLock<Arc<Schema>> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        field(
            "txn",
            DataType::Struct(Fields::from(vec![
                field("appId", string()),
                field("version", DataType::Int64),
                field("lastUpdated", DataType::Int64),
            ])),
        ),
        add(),
        remove(),
        field(
            "metaData",
            DataType::Struct(Fields::from(vec![
                field("id", string()),
                field("name", string()),
                field("description", string()),
                field(
                    "format",
                    DataType::Struct(Fields::from(vec![field("provider", string()), field("options", string_map())])),
                ),
                field("schemaString", string()),
                field("partitionColumns", string_list()),
                field("createdTime", DataType::Int64),
                field("configuration", string_map()),
            ])),
        ),
        field(
            "protocol",
            DataType::Struct(Fields::from(vec![
                field("minReaderVersion", DataType::Int32),
                field("minWriterVersion", DataType::Int32),
                field("readerFeatures", string_list()),
                field("writerFeatures", string_list()),
            ])),
        ),
        field(
            "checkpointMetadata",
            DataType::Struct(Fields::from(vec![field("version", DataType::Int64), field("tags", string_map())])),
        ),
        field(
            "sidecar",
            DataType::Struct(Fields::from(vec![
                field("path", string()),
                field("sizeInBytes", DataType::Int64),
                field("modificationTime", DataType::Int64),
                field("tags", string_map()),
            ])),
        ),
    ]))
});

/// A sidecar holds only file actions (Databricks' sidecars have `add` and `remove` columns).
static SIDECAR_SCHEMA: LazyLock<Arc<Schema>> = LazyLock::new(|| Arc::new(Schema::new(vec![add(), remove()])));

/// The Parquet bytes of `rows` (one action per row); `sidecar` selects the sidecar schema.
pub fn json_rows_to_parquet(rows: &[Value], sidecar: bool) -> Vec<u8> {
    let schema = if sidecar { SIDECAR_SCHEMA.clone() } else { CHECKPOINT_SCHEMA.clone() };
    let mut text = Vec::new();
    for r in rows {
        text.extend_from_slice(r.to_string().as_bytes());
        text.push(b'\n');
    }
    let reader = ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build(std::io::Cursor::new(text))
        .expect("a JSON reader over checkpoint rows");
    let batches: Vec<RecordBatch> =
        reader.collect::<Result<_, _>>().expect("checkpoint rows parse against the checkpoint schema");
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, None).expect("a Parquet writer");
    for b in &batches {
        writer.write(b).expect("write a checkpoint batch");
    }
    writer.close().expect("close the Parquet writer");
    out
}
