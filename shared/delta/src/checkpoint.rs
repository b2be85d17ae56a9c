//! A Parquet checkpoint (classic, one part of a multi-part one, a v2 checkpoint's top-level file or a sidecar)
//! as the actions the replay needs, with the `parquet` crate's record reader: only the columns read are
//! decoded (an `add`'s `stats`, often most of a checkpoint, are not).

use crate::rules::actions::{Action, DeletionVector, FileAction, Protocol};
use bytes::Bytes;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use parquet::schema::types::Type;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The top-level columns read, and the fields read of each (`None`: all of them). A checkpoint's `remove` rows
/// are tombstones that a reader never replays against its adds: they are not read.
const COLUMNS: [(&str, Option<&[&str]>); 5] = [
    ("add", Some(&["path", "deletionVector"])),
    ("txn", Some(&["appId", "version"])),
    ("protocol", None),
    ("metaData", Some(&["configuration"])),
    ("sidecar", Some(&["path"])),
];

/// The columns of the table's protocol and metadata only (the primary's snapshot needs nothing else).
const TABLE_COLUMNS: [(&str, Option<&[&str]>); 2] = [("protocol", None), ("metaData", Some(&["configuration"]))];

fn projection(schema: &Type, columns: &[(&str, Option<&[&str]>)]) -> Result<Type, String> {
    let mut fields = Vec::new();
    for top in schema.get_fields() {
        let Some((_, keep)) = columns.iter().find(|(n, _)| *n == top.name()) else { continue };
        let projected = match keep {
            None => top.clone(),
            Some(keep) => {
                let inner: Vec<Arc<Type>> = top.get_fields().iter().filter(|f| keep.contains(&f.name())).cloned().collect();
                let info = top.get_basic_info();
                Arc::new(
                    Type::group_type_builder(top.name())
                        .with_repetition(info.repetition())
                        .with_fields(inner)
                        .build()
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        fields.push(projected);
    }
    Type::group_type_builder(schema.name()).with_fields(fields).build().map_err(|e| e.to_string())
}

fn get<'a>(row: &'a Row, name: &str) -> Option<&'a Field> {
    row.get_column_iter().find(|(n, _)| n.as_str() == name).map(|(_, f)| f)
}

fn group<'a>(row: &'a Row, name: &str) -> Option<&'a Row> {
    match get(row, name) {
        Some(Field::Group(g)) => Some(g),
        _ => None,
    }
}

fn string(row: &Row, name: &str) -> Option<String> {
    match get(row, name) {
        Some(Field::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

fn long(row: &Row, name: &str) -> Option<i64> {
    match get(row, name) {
        Some(Field::Long(v)) => Some(*v),
        Some(Field::Int(v)) => Some(i64::from(*v)),
        _ => None,
    }
}

fn strings(row: &Row, name: &str) -> Option<Vec<String>> {
    match get(row, name) {
        Some(Field::ListInternal(list)) => Some(
            list.elements()
                .iter()
                .filter_map(|e| match e {
                    Field::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

fn file_action(row: &Row) -> Option<FileAction> {
    let deletion_vector = group(row, "deletionVector").and_then(|dv| {
        Some(DeletionVector {
            storage_type: string(dv, "storageType")?,
            path_or_inline_dv: string(dv, "pathOrInlineDv")?,
            offset: long(dv, "offset").and_then(|o| i32::try_from(o).ok()),
        })
    });
    Some(FileAction { path: string(row, "path")?, deletion_vector })
}

fn action(row: &Row) -> Option<Action> {
    if let Some(a) = group(row, "add") {
        return file_action(a).map(Action::Add);
    }
    if let Some(t) = group(row, "txn") {
        return Some(Action::Txn { app_id: string(t, "appId")?, version: long(t, "version")? });
    }
    if let Some(p) = group(row, "protocol") {
        return Some(Action::Protocol(Protocol {
            min_reader_version: long(p, "minReaderVersion").unwrap_or_default(),
            min_writer_version: long(p, "minWriterVersion").unwrap_or_default(),
            reader_features: strings(p, "readerFeatures"),
            writer_features: strings(p, "writerFeatures"),
        }));
    }
    if let Some(m) = group(row, "metaData") {
        let mut configuration = BTreeMap::new();
        if let Some(Field::MapInternal(map)) = get(m, "configuration") {
            for (k, v) in map.entries() {
                if let (Field::Str(k), Field::Str(v)) = (k, v) {
                    configuration.insert(k.clone(), v.clone());
                }
            }
        }
        return Some(Action::Metadata { configuration });
    }
    if let Some(s) = group(row, "sidecar") {
        return Some(Action::Sidecar(string(s, "path")?));
    }
    None
}

/// The actions of a Parquet checkpoint file (its removes left out: they are tombstones). An unreadable file is an
/// error naming the problem.
pub fn read(body: Vec<u8>) -> Result<Vec<Action>, String> {
    read_columns(body, &COLUMNS)
}

/// The `protocol` and `metaData` actions of a Parquet checkpoint file.
pub fn read_table(body: Vec<u8>) -> Result<Vec<Action>, String> {
    read_columns(body, &TABLE_COLUMNS)
}

fn read_columns(body: Vec<u8>, columns: &[(&str, Option<&[&str]>)]) -> Result<Vec<Action>, String> {
    let reader = SerializedFileReader::new(Bytes::from(body)).map_err(|e| format!("not a Parquet file: {e}"))?;
    let schema = projection(reader.metadata().file_metadata().schema(), columns)?;
    let rows = reader.get_row_iter(Some(schema)).map_err(|e| format!("unreadable checkpoint: {e}"))?;
    let mut out = Vec::new();
    for row in rows {
        let row = row.map_err(|e| format!("unreadable checkpoint row: {e}"))?;
        out.extend(action(&row));
    }
    Ok(out)
}
