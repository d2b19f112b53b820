//! `tufa status`: every role of the index's TUF repository with its version, expiry, keys and
//! threshold, warnings for offline roles that expire soon, signing requests still waiting, and
//! the disk the data directory takes (what the current timestamp reaches, and what waits for
//! removal after the grace period).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Args;
use tufa_index::storage::Storage;
use tufa_metadata::{
    DelegatedRoles, Expires, KeyId, Metadata, RoleName, Snapshot, Targets, Threshold, Timestamp,
};
use tufa_repo::{INCOMING_DIR, OfflineState, SigningRequest, Store};

/// Offline roles are signed by people; a month is the warning they need to gather.
const OFFLINE_WARNING: Duration = Duration::from_secs(30 * 86_400);

#[derive(Args)]
pub struct StatusArgs {
    /// The index's data directory.
    #[arg(long, env = "TUFA_DATA")]
    data: PathBuf,
    #[command(flatten)]
    database: crate::locations::DatabaseArg,
    /// Where the TUF repository is, when not where DATA/locations.toml says (`s3://...`).
    #[arg(long, env = "TUFA_STORAGE")]
    storage: Option<String>,
}

fn read<T: tufa_metadata::Role>(store: &dyn Store, file: &str) -> Result<Metadata<T>> {
    let bytes = store
        .read(file)?
        .with_context(|| format!("{file} is missing"))?;
    Metadata::from_bytes(&bytes).with_context(|| format!("{file} is invalid"))
}

fn when(expires: &Expires, now: SystemTime) -> String {
    let at = expires.to_system_time();
    let text = time::OffsetDateTime::from_unix_timestamp(expires.unix_timestamp())
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}Z",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default();
    match at.duration_since(now) {
        Ok(left) if left.as_secs() >= 2 * 86_400 => {
            format!("{text} (in {} days)", left.as_secs() / 86_400)
        }
        Ok(left) => format!("{text} (in {} hours)", left.as_secs() / 3_600),
        Err(_) => format!("{text} (EXPIRED)"),
    }
}

fn keys(ids: &[KeyId], threshold: Threshold) -> String {
    let short: Vec<&str> = ids
        .iter()
        .map(|k| &k.as_str()[..k.as_str().len().min(12)])
        .collect();
    format!(
        "{} of {} [{}]",
        threshold.get(),
        ids.len(),
        short.join(", ")
    )
}

pub fn run(args: StatusArgs) -> Result<()> {
    let storage = Storage::open(
        crate::locations::Locations::storage(&args.data, args.storage.clone())?.as_deref(),
    )?;
    let shared = storage.tuf_store_beside_publisher(&args.data);
    let store = shared.as_ref();
    if store.size("metadata/1.root.json")?.is_none() {
        bail!(
            "{} holds no TUF repository (no tuf/metadata/1.root.json)",
            storage.describe(&args.data)
        );
    }
    let state = OfflineState::load(&shared).context("verifying the offline roles")?;
    let root = &state.root.signed;
    let timestamp: Metadata<Timestamp> = read(store, "metadata/timestamp.json")?;
    if let Err(error) = root.verify_delegate("timestamp", &timestamp) {
        let signers: Vec<&KeyId> = timestamp.signatures().iter().map(|s| &s.keyid).collect();
        if signers
            .iter()
            .any(|k| root.roles.timestamp.keyids.contains(k))
        {
            return Err(error).context("verifying timestamp");
        }
        // An online-key rotation was installed (a server started with the old key installs it,
        // then refuses to sign): a state to explain, not an error of this command.
        let now = SystemTime::now();
        println!("{:<14} {:>8}  {:<36} keys", "role", "version", "expires");
        for (role, version, expires, keys) in [
            (
                "root",
                root.version,
                root.expires,
                keys(&root.roles.root.keyids, root.roles.root.threshold),
            ),
            (
                "targets",
                state.targets.signed.version,
                state.targets.signed.expires,
                keys(&root.roles.targets.keyids, root.roles.targets.threshold),
            ),
            (
                "bins",
                state.bins.signed.version,
                state.bins.signed.expires,
                String::new(),
            ),
        ] {
            println!(
                "{role:<14} {version:>8}  {:<36} {keys}",
                when(&expires, now)
            );
        }
        let short = |ids: &[&KeyId]| {
            ids.iter()
                .map(|k| &k.as_str()[..k.as_str().len().min(12)])
                .collect::<Vec<_>>()
                .join(", ")
        };
        let trusted: Vec<&KeyId> = root.roles.timestamp.keyids.iter().collect();
        println!(
            "timestamp, snapshot and bin-* (version {} of timestamp) are signed by online key \
             [{}], which root version {} no longer lists: an online-key rotation is installed \
             and no server has re-signed the online roles, so clients refuse them until one \
             does. Next: start `tufa serve --online-key <the new online key>` with the key root \
             lists for timestamp [{}]; at start it re-signs every online role",
            timestamp.signed.version,
            short(&signers),
            root.version,
            short(&trusted)
        );
        return Ok(());
    }
    let snapshot: Metadata<Snapshot> = read(
        store,
        &format!(
            "metadata/{}.snapshot.json",
            timestamp.signed.snapshot_meta.version
        ),
    )?;
    root.verify_delegate("snapshot", &snapshot)
        .context("verifying snapshot")?;
    let Some(DelegatedRoles::Succinct(succinct)) =
        state.bins.signed.delegations.as_ref().map(|d| &d.roles)
    else {
        bail!("bins delegates no succinct_roles");
    };
    let bins_keys = state
        .targets
        .signed
        .delegations
        .as_ref()
        .and_then(|d| d.role_keys(&RoleName::new("bins").ok()?))
        .map(|(ids, threshold)| keys(ids, threshold))
        .unwrap_or_default();

    let now = SystemTime::now();
    let mut rows = vec![
        (
            "root".to_string(),
            root.version,
            root.expires,
            keys(&root.roles.root.keyids, root.roles.root.threshold),
        ),
        (
            "targets".to_string(),
            state.targets.signed.version,
            state.targets.signed.expires,
            keys(&root.roles.targets.keyids, root.roles.targets.threshold),
        ),
        (
            "bins".to_string(),
            state.bins.signed.version,
            state.bins.signed.expires,
            bins_keys,
        ),
        (
            "snapshot".to_string(),
            snapshot.signed.version,
            snapshot.signed.expires,
            keys(&root.roles.snapshot.keyids, root.roles.snapshot.threshold),
        ),
        (
            "timestamp".to_string(),
            timestamp.signed.version,
            timestamp.signed.expires,
            keys(&root.roles.timestamp.keyids, root.roles.timestamp.threshold),
        ),
    ];
    let mut reachable: HashSet<String> = ["metadata/timestamp.json".to_string()]
        .into_iter()
        .chain(
            snapshot
                .signed
                .meta
                .iter()
                .map(|(role, meta)| format!("metadata/{}.{role}", meta.version)),
        )
        .collect();
    reachable.insert(format!(
        "metadata/{}.snapshot.json",
        timestamp.signed.snapshot_meta.version
    ));
    let mut earliest: Option<(Expires, u64)> = None;
    let mut highest = 0;
    let mut lowest = u64::MAX;
    for name in succinct.role_names() {
        let Some(meta) = snapshot.signed.role_meta(&name) else {
            bail!("snapshot does not list {name}");
        };
        let bin: Metadata<Targets> =
            read(store, &format!("metadata/{}.{name}.json", meta.version))?;
        for (target, file) in &bin.signed.targets {
            if let Some(sha256) = file.hashes.get("sha256") {
                reachable.insert(tufa_repo::layout::target_file(target, sha256));
            }
        }
        highest = highest.max(bin.signed.version);
        lowest = lowest.min(bin.signed.version);
        if earliest.is_none_or(|(e, _)| bin.signed.expires.unix_timestamp() < e.unix_timestamp()) {
            earliest = Some((bin.signed.expires, bin.signed.version));
        }
    }
    // The row shows the lowest bin version, as /metrics' tufa_role_version does, so the two
    // agree; the range follows the table.
    let bin_range = (lowest < highest).then_some((lowest, highest));
    if let Some((expires, _)) = earliest {
        rows.push((
            format!("bin-* ({})", succinct.bin_count()),
            lowest,
            expires,
            keys(&succinct.keyids, succinct.threshold),
        ));
    }
    println!(
        "{:<14} {:>8}  {:<36} keys (threshold of n [key IDs])",
        "role", "version", "expires"
    );
    for (role, version, expires, keys) in &rows {
        println!("{role:<14} {version:>8}  {:<36} {keys}", when(expires, now));
    }
    if let Some((lowest, highest)) = bin_range {
        println!(
            "bin-* versions range from {lowest} to {highest}; the row shows the lowest, as \
             /metrics (tufa_role_version) does"
        );
    }
    for (role, _, expires, _) in rows.iter().take(3) {
        if expires.is_expired_at(now + OFFLINE_WARNING) {
            eprintln!(
                "warning: {role} expires {}: prepare and sign its next version now \
                 (`tufa roles prepare {role}`, `tufa sign`, `tufa roles submit`)",
                when(expires, now)
            );
        }
    }
    for (role, _, expires, _) in rows.iter().skip(3) {
        if expires.is_expired_at(now) {
            eprintln!(
                "warning: {role} has expired: is `tufa serve` running? It re-signs online roles"
            );
        }
    }
    if let Some(signed_at) = store.modified("metadata/timestamp.json")?
        && let Ok(behind) = signed_at.duration_since(now)
        && behind > tufa_repo::DEFAULT_CLOCK_TOLERANCE
    {
        eprintln!(
            "warning: the clock is {} s behind the newest timestamp's signing: `tufa serve` \
             pauses signing until the clock is fixed (or restarted with --trust-clock after a \
             clock that ran ahead was corrected)",
            behind.as_secs()
        );
    }
    disk(&args.data, &storage, store, &reachable)?;
    publishing(&args.data, &args.database)?;
    for file in store.list(INCOMING_DIR)? {
        let Some(bytes) = store.read(&file)? else {
            continue;
        };
        let request = SigningRequest::from_bytes(&bytes)?;
        let name = format!("{} version {}", request.role(), request.version());
        match state.requirements(&request) {
            Ok(requirements) => {
                for requirement in requirements {
                    println!("pending {name}: {requirement}");
                }
            }
            Err(error) => println!("pending {name}: cannot be installed: {error}"),
        }
    }
    Ok(())
}

/// The data directory by part, and the files under `tuf/` split into those the current timestamp
/// reaches (with every root) and those waiting for removal.
fn disk(
    data: &Path,
    storage: &Storage,
    store: &dyn Store,
    reachable: &HashSet<String>,
) -> Result<()> {
    let usage = tufa_index::usage::measure(data)?;
    let mut current = tufa_index::usage::Tally::default();
    let mut awaiting = tufa_index::usage::Tally::default();
    // A bucket lists sizes with the keys: one request per thousand objects, not one per file.
    let sizes: Vec<(String, u64)> = match storage {
        Storage::S3 { client, location } => {
            let tuf = location.join(tufa_index::signing::TUF_DIR);
            let root = format!("{}/", tuf.prefix);
            client
                .list(&root)?
                .into_iter()
                .filter_map(|(key, size)| Some((key.strip_prefix(&root)?.to_string(), size)))
                .filter(|(file, _)| {
                    ["metadata/", "targets/", "log/"]
                        .iter()
                        .any(|dir| file.starts_with(dir))
                })
                .collect()
        }
        Storage::Local => {
            let mut sizes = Vec::new();
            for file in store
                .list("metadata")?
                .into_iter()
                .chain(store.list("targets")?)
                .chain(store.list(tufa_repo::tlog::LOG_DIR)?)
            {
                if let Some(bytes) = store.size(&file)? {
                    sizes.push((file, bytes));
                }
            }
            sizes
        }
    };
    if !storage.is_local() {
        println!("storage {}", storage.describe(data));
    }
    let log_files: Vec<String> = sizes
        .iter()
        .filter(|(file, _)| file.starts_with("log/"))
        .map(|(file, _)| file.clone())
        .collect();
    let superseded_log = tufa_repo::tlog::superseded_files(&log_files);
    for (file, bytes) in sizes {
        // The log's files are published until a newer checkpoint supersedes them.
        let published = if file.starts_with("log/") {
            !superseded_log.contains(&file)
        } else {
            reachable.contains(&file) || file.ends_with(".root.json")
        };
        let tally = if published {
            &mut current
        } else {
            &mut awaiting
        };
        tally.files += 1;
        tally.bytes += bytes;
    }
    let rows = [
        ("tuf/", usage.tuf),
        ("  published", current),
        ("  awaiting removal", awaiting),
        ("files/", usage.distribution_files),
        ("database", usage.database),
        ("tmp/", usage.staging),
        ("total", usage.total),
    ];
    for (part, tally) in rows {
        println!(
            "disk {part:<20} {:>10} files {:>14} bytes",
            tally.files, tally.bytes
        );
    }
    if awaiting.files > 0 {
        println!(
            "{} superseded files wait for removal: `tufa serve` removes them once the grace \
             period (--grace) has passed since they were superseded or since it started",
            awaiting.files
        );
    }
    Ok(())
}

/// What the database says of publishing: changes waiting to be signed, and projects whose page
/// could not be published.
fn publishing(data: &std::path::Path, database: &crate::locations::DatabaseArg) -> Result<()> {
    if database.resolve(data)?.is_none() && !crate::locations::sqlite_file(data).exists() {
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let database = crate::index_commands::open_database(data, database).await?;
        let last = database.last_serial().await?;
        let signed = database.signed_serial().await?;
        println!("serials: {last} recorded, {signed} signed");
        match database
            .lease()
            .await?
            .filter(|lease| !lease.holder.is_empty())
        {
            Some(lease) => println!(
                "publisher: {} (lease taken {}, renewed {} by its clock; epoch {}, TTL {} ms)",
                lease.holder,
                tufa_index::format_micros(lease.acquired),
                tufa_index::format_micros(lease.renewed),
                lease.epoch,
                lease.ttl_ms
            ),
            None => println!("publisher: none (no tufa serve holds the publisher lease)"),
        }
        let (count, projects) = database.unpublished(20).await?;
        if count > 0 {
            eprintln!(
                "warning: {count} project(s) could not be published and are retried with back-off \
                 (every other change is signed); fix the cause named below:"
            );
            for project in projects {
                eprintln!(
                    "  {} ({} attempts): {}",
                    project.project, project.attempts, project.error
                );
            }
        }
        mirror(&database).await?;
        database.close().await;
        anyhow::Ok(())
    })
}

/// What the database says of the upstream mirror: projects mirrored, those whose refresh fails
/// (their last page stays served), and the hash changes upstream made that were refused.
async fn mirror(database: &tufa_index::Database) -> Result<()> {
    let mirrored = database.mirrored_count().await?;
    let (failing, errors) = database.mirror_errors(20).await?;
    let (conflicts, files) = database.pin_conflicts(20).await?;
    if mirrored == 0 && conflicts == 0 {
        return Ok(());
    }
    println!("mirror: {mirrored} project(s) mirrored from upstream, {failing} failing to refresh");
    for error in errors {
        eprintln!(
            "  {} failing since {}: {}",
            error.project,
            tufa_index::format_micros(error.since),
            error.error
        );
    }
    if conflicts > 0 {
        eprintln!(
            "warning: upstream changed the content of {conflicts} file name(s) already pinned; \
             the pinned files stay served and the new ones are refused (a compromised upstream \
             or a substituted file):"
        );
        for conflict in files {
            eprintln!(
                "  {} of {}: pinned sha256 {}, upstream now lists {} (since {}, last seen {})",
                conflict.filename,
                conflict.project,
                conflict.pinned_sha256,
                conflict.upstream_sha256,
                tufa_index::format_micros(conflict.first_seen),
                tufa_index::format_micros(conflict.last_seen)
            );
        }
    }
    Ok(())
}
