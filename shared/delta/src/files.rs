//! Which of the files a snapshot needs the replica holds, checked by key: a directory holding many of them is
//! listed (delimited, so never its subdirectories, and bounded by how many it holds), the rest HEADed. The table's
//! root is never listed whole: a table of 20,000 live files under partitions costs a page or two per partition.

use super::DeltaLimits;
use dr_ports::DataBuckets;
use dr_ports::error::StoreError;
use futures_util::future::try_join_all;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use tokio::sync::Semaphore;

/// From how many needed files in one directory it is listed rather than HEADed file by file.
const LIST_FROM: usize = 8;
/// Keys per listed page expected to be needed: a directory is listed for at most `1 + needed / NEEDED_PER_PAGE`
/// pages (a directory full of files a snapshot no longer needs is not paged through); what is left is HEADed.
const NEEDED_PER_PAGE: usize = 100;

/// The files of `needed` (relative to the table's `root`, which is `""` or ends with `/`) present in `bucket`.
pub(super) async fn present_files<D: DataBuckets>(
    data: &D,
    bucket: &str,
    root: &str,
    needed: &BTreeSet<String>,
    limits: &DeltaLimits,
) -> Result<HashSet<String>, StoreError> {
    let mut dirs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for path in needed {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        dirs.entry(dir).or_default().push(path);
    }
    let permits = Semaphore::new(limits.reads_in_flight.max(1));
    let (listed, single): (Vec<_>, Vec<_>) = dirs.into_iter().partition(|(_, files)| files.len() >= LIST_FROM);
    let listings =
        try_join_all(listed.into_iter().map(|(dir, files)| list_dir(data, bucket, root, dir, files, limits, &permits)));
    let heads = try_join_all(single.into_iter().flat_map(|(_, f)| f).map(|path| head(data, bucket, root, path, &permits)));
    let (listings, heads) = tokio::try_join!(listings, heads)?;
    Ok(listings.into_iter().flatten().chain(heads.into_iter().flatten()).collect())
}

async fn head<D: DataBuckets>(
    data: &D,
    bucket: &str,
    root: &str,
    path: &str,
    permits: &Semaphore,
) -> Result<Option<String>, StoreError> {
    let _permit = permits.acquire().await.ok();
    Ok(data.head(bucket, &format!("{root}{path}")).await?.map(|_| path.to_owned()))
}

/// The needed `files` of `dir` present: listed for a bounded number of pages, the files beyond HEADed.
async fn list_dir<D: DataBuckets>(
    data: &D,
    bucket: &str,
    root: &str,
    dir: &str,
    files: Vec<&str>,
    limits: &DeltaLimits,
    permits: &Semaphore,
) -> Result<Vec<String>, StoreError> {
    let prefix = if dir.is_empty() { root.to_owned() } else { format!("{root}{dir}/") };
    let wanted: HashSet<&str> = files.iter().copied().collect();
    let mut present = Vec::new();
    let mut token: Option<String> = None;
    let mut last_listed: Option<String> = None;
    for _ in 0..=files.len() / NEEDED_PER_PAGE {
        let page = {
            let _permit = permits.acquire().await.ok();
            data.list_dir_page(bucket, &prefix, None, token.as_deref(), limits.page_size).await?
        };
        for o in &page.objects {
            let rel = o.key.strip_prefix(root).unwrap_or(&o.key);
            if wanted.contains(rel) {
                present.push(rel.to_owned());
            }
        }
        last_listed = page.objects.last().map(|o| o.key.strip_prefix(root).unwrap_or(&o.key).to_owned());
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(present),
        }
    }
    // The bound stopped the listing: the files after its last key are HEADed.
    let rest = files.into_iter().filter(|f| last_listed.as_deref().is_none_or(|l| *f > l));
    let heads = try_join_all(rest.map(|path| head(data, bucket, root, path, permits))).await?;
    present.extend(heads.into_iter().flatten());
    Ok(present)
}
