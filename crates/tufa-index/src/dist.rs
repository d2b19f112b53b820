//! Distribution file names: wheels (PEP 427 / the binary distribution format) and source
//! distributions (PEP 625), parsed into the project and version they claim.

use crate::error::Invalid;
use crate::name::{ProjectName, Version};

/// The longest project name an upload may use, in bytes (names are ASCII) as spelled, which is
/// never shorter than the normalized name. python-tuf stores a project's TUF target
/// `simple/<name>/index.json` as one file named `quote(path, safe="")`,
/// `simple%2F<name>%2Findex.json`: the name plus 22 bytes, which must fit the 255 bytes a file
/// name may have on Linux (`NAME_MAX`), macOS and Windows. A longer name would be signed, but no
/// such client could store its page. PyPI sets no length limit of its own.
pub const MAX_PROJECT_NAME_LEN: usize = 255 - "simple%2F%2Findex.json".len();
/// The longest version an upload may use, in bytes. PEP 440 sets no limit; real versions, dated
/// development releases with local labels included, take a few dozen bytes. The version is also
/// part of every file name, so [`MAX_FILENAME_LEN`] bounds it together with the project name.
pub const MAX_VERSION_LEN: usize = 128;
/// The longest distribution file name, in bytes: pip and uv save a downloaded file under its own
/// name (`pip download`, caches, `--find-links` directories), so it must fit `NAME_MAX`, 255
/// bytes. The `.dist-info` directory an installer creates is shorter than a wheel's file name.
pub const MAX_FILENAME_LEN: usize = 255;

/// The two kinds of file an index accepts, with the `filetype` form value twine and uv send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistKind {
    Wheel,
    Sdist,
}

impl DistKind {
    pub fn packagetype(self) -> &'static str {
        match self {
            DistKind::Wheel => "bdist_wheel",
            DistKind::Sdist => "sdist",
        }
    }

    pub fn from_packagetype(value: &str) -> Option<Self> {
        match value {
            "bdist_wheel" => Some(DistKind::Wheel),
            "sdist" => Some(DistKind::Sdist),
            _ => None,
        }
    }
}

/// How a distribution file is packed. Uploads take only what PyPI takes today (wheels and
/// `.tar.gz` sdists, PEPs 527 and 625); an import of an old directory also takes every sdist
/// archive pip and uv still install.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archive {
    Wheel,
    TarGz,
    Zip,
    TarBz2,
    TarXz,
    Tar,
}

/// Sdist suffixes pip and uv install (pip's `SUPPORTED_EXTENSIONS`), longest first so that
/// `.tar.gz` wins over `.tar`.
pub(crate) const SDIST_SUFFIXES: &[(&str, Archive)] = &[
    (".tar.gz", Archive::TarGz),
    (".tar.bz2", Archive::TarBz2),
    (".tar.xz", Archive::TarXz),
    (".tgz", Archive::TarGz),
    (".tbz", Archive::TarBz2),
    (".txz", Archive::TarXz),
    (".zip", Archive::Zip),
    (".tar", Archive::Tar),
];

/// Formats PyPI once took and still serves that no current installer installs: suffix,
/// Warehouse's package type, and why an import refuses it (a mirror lists them as upstream does).
pub(crate) const OBSOLETE_SUFFIXES: &[(&str, &str, &str)] = &[
    (
        ".egg",
        "bdist_egg",
        "pip stopped installing eggs; upload a wheel of the same release instead",
    ),
    (
        ".exe",
        "bdist_wininst",
        "a Windows installer (bdist_wininst) is not installable by pip or uv",
    ),
    (
        ".msi",
        "bdist_msi",
        "a Windows installer (bdist_msi) is not installable by pip or uv",
    ),
    (
        ".rpm",
        "bdist_rpm",
        "an RPM package (bdist_rpm) is not installable by pip or uv",
    ),
    (
        ".dmg",
        "bdist_dmg",
        "a macOS disk image (bdist_dmg) is not installable by pip or uv",
    ),
];

/// A valid distribution file name and what it claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistFilename {
    pub filename: String,
    pub kind: DistKind,
    pub archive: Archive,
    pub project: ProjectName,
    pub version: Version,
    /// The wheel's Python tag (`py3`, `cp312`), or `source` for an sdist, as Warehouse reports it.
    pub python_version: String,
}

fn invalid(filename: &str, reason: impl Into<String>) -> Invalid {
    Invalid::Filename {
        filename: filename.to_string(),
        reason: reason.into(),
    }
}

fn too_long(filename: &str, what: &str, length: usize, limit: usize, why: &str) -> Invalid {
    invalid(
        filename,
        format!("the {what} is {length} bytes long, over the limit of {limit} bytes ({why})"),
    )
}

impl DistFilename {
    /// Parses an uploaded file's name, refusing names, versions and file names longer than
    /// clients can store.
    pub fn parse(filename: &str) -> Result<Self, Invalid> {
        let dist = Self::parse_importable(filename)?;
        if !matches!(dist.archive, Archive::Wheel | Archive::TarGz) || filename.ends_with(".tgz") {
            return Err(invalid(
                filename,
                "invalid file extension: use .whl for wheels or .tar.gz for source distributions \
                 (PEP 625); older sdist formats are taken only by `tufa import`",
            ));
        }
        Ok(dist)
    }

    /// [`DistFilename::parse`] for files being imported: also every older sdist archive pip and
    /// uv install (`.zip`, `.tar.bz2`, `.tar.xz`, `.tgz`, `.tar`, ...).
    pub fn parse_importable(filename: &str) -> Result<Self, Invalid> {
        let dist = Self::parse_unbounded(filename)?;
        let name = dist.name_as_spelled();
        if name.len() > MAX_PROJECT_NAME_LEN {
            return Err(too_long(
                filename,
                "project name",
                name.len(),
                MAX_PROJECT_NAME_LEN,
                "clients store its TUF target as simple%2F<name>%2Findex.json, a file name of at \
                 most 255 bytes",
            ));
        }
        if dist.version.as_str().len() > MAX_VERSION_LEN {
            return Err(too_long(
                filename,
                "version",
                dist.version.as_str().len(),
                MAX_VERSION_LEN,
                "PEP 440 versions are far shorter",
            ));
        }
        if filename.len() > MAX_FILENAME_LEN {
            return Err(too_long(
                filename,
                "file name",
                filename.len(),
                MAX_FILENAME_LEN,
                "pip and uv store the file under this name, and a file name has at most 255 bytes",
            ));
        }
        Ok(dist)
    }

    /// The project name as the file name spells it.
    fn name_as_spelled(&self) -> &str {
        let stem = split_suffix(&self.filename).map_or(self.filename.as_str(), |(stem, _)| stem);
        match self.kind {
            DistKind::Wheel => stem.split('-').next().unwrap_or(stem),
            DistKind::Sdist => stem.rsplit_once('-').map_or(stem, |(name, _)| name),
        }
    }

    fn parse_unbounded(filename: &str) -> Result<Self, Invalid> {
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '!');
        if filename.is_empty() || filename.starts_with('.') || !filename.chars().all(allowed) {
            return Err(invalid(
                filename,
                "a file name holds only ASCII letters, digits and '._-+!' (no path separators)",
            ));
        }
        match split_suffix(filename) {
            Some((stem, Archive::Wheel)) => Self::parse_wheel(filename, stem),
            Some((stem, archive)) => Self::parse_sdist(filename, stem, archive),
            None => Err(
                match OBSOLETE_SUFFIXES
                    .iter()
                    .find(|(suffix, _, _)| filename.ends_with(suffix))
                {
                    Some((suffix, _, why)) => invalid(
                        filename,
                        format!("invalid file extension: {suffix} is not taken, {why}"),
                    ),
                    None => invalid(
                        filename,
                        "invalid file extension: use .whl for wheels or .tar.gz for source \
                     distributions (PEP 625)",
                    ),
                },
            ),
        }
    }

    fn parse_wheel(filename: &str, stem: &str) -> Result<Self, Invalid> {
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, python_tag) = match parts.as_slice() {
            [name, version, python, _abi, _platform] => (*name, *version, *python),
            [name, version, build, python, _abi, _platform] => {
                if !build.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(invalid(
                        filename,
                        "a wheel's build tag must start with a digit",
                    ));
                }
                (*name, *version, *python)
            }
            _ => {
                return Err(invalid(
                    filename,
                    "a wheel is named {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl",
                ));
            }
        };
        if parts.iter().any(|part| part.is_empty()) {
            return Err(invalid(filename, "a wheel name has an empty component"));
        }
        Ok(DistFilename {
            filename: filename.to_string(),
            kind: DistKind::Wheel,
            archive: Archive::Wheel,
            project: ProjectName::new(name).map_err(|e| invalid(filename, e.to_string()))?,
            version: Version::new(version).map_err(|e| invalid(filename, e.to_string()))?,
            python_version: python_tag.to_string(),
        })
    }

    fn parse_sdist(filename: &str, stem: &str, archive: Archive) -> Result<Self, Invalid> {
        let (name, version) = stem.rsplit_once('-').ok_or_else(|| {
            invalid(
                filename,
                "a source distribution is named {name}-{version}.tar.gz",
            )
        })?;
        Ok(DistFilename {
            filename: filename.to_string(),
            kind: DistKind::Sdist,
            archive,
            project: ProjectName::new(name).map_err(|e| invalid(filename, e.to_string()))?,
            version: Version::new(version).map_err(|e| invalid(filename, e.to_string()))?,
            python_version: "source".to_string(),
        })
    }
}

/// Whether a file name ends like a distribution file, one `tufa import` takes or an obsolete
/// format it refuses with the reason (anything else in a directory is not a distribution).
pub fn looks_like_distribution(filename: &str) -> bool {
    split_suffix(filename).is_some()
        || OBSOLETE_SUFFIXES
            .iter()
            .any(|(suffix, _, _)| filename.ends_with(suffix))
}

/// The file name without its distribution suffix, and the archive that suffix names.
fn split_suffix(filename: &str) -> Option<(&str, Archive)> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        return Some((stem, Archive::Wheel));
    }
    SDIST_SUFFIXES
        .iter()
        .find_map(|(suffix, archive)| Some((filename.strip_suffix(suffix)?, *archive)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheels_and_sdists_parse() {
        let wheel = DistFilename::parse("Tufa_Demo-1.0.0-py3-none-any.whl").unwrap();
        assert_eq!(wheel.kind, DistKind::Wheel);
        assert_eq!(wheel.project.as_str(), "tufa-demo");
        assert_eq!(wheel.version.as_str(), "1.0.0");
        assert_eq!(wheel.python_version, "py3");
        let built =
            DistFilename::parse("demo-2.0-1-cp312-cp312-manylinux_2_17_x86_64.whl").unwrap();
        assert_eq!(built.python_version, "cp312");
        let sdist = DistFilename::parse("tufa_demo-1.0.0rc1.tar.gz").unwrap();
        assert_eq!(sdist.kind, DistKind::Sdist);
        assert_eq!(sdist.version.as_str(), "1.0.0rc1");
        let legacy = DistFilename::parse("tufa-demo-1.0.tar.gz").unwrap();
        assert_eq!(legacy.project.as_str(), "tufa-demo");
        let longest = "a".repeat(MAX_PROJECT_NAME_LEN);
        let at_limit = DistFilename::parse(&format!("{longest}-1.0-py3-none-any.whl")).unwrap();
        assert_eq!(at_limit.project.as_str(), longest);
    }

    #[test]
    fn an_import_takes_every_sdist_archive_pip_installs() {
        for (name, archive) in [
            ("demo-1.0.zip", Archive::Zip),
            ("demo-1.0.tar.bz2", Archive::TarBz2),
            ("demo-1.0.tbz", Archive::TarBz2),
            ("demo-1.0.tar.xz", Archive::TarXz),
            ("demo-1.0.tgz", Archive::TarGz),
            ("demo-1.0.tar", Archive::Tar),
            ("demo-1.0.tar.gz", Archive::TarGz),
        ] {
            let dist = DistFilename::parse_importable(name).unwrap();
            assert_eq!(
                (dist.kind, dist.archive),
                (DistKind::Sdist, archive),
                "{name}"
            );
            assert_eq!(dist.version.as_str(), "1.0", "{name}");
            assert_eq!(dist.project.as_str(), "demo", "{name}");
        }
        let refused = DistFilename::parse_importable("demo-1.0.win32.exe").unwrap_err();
        assert!(refused.to_string().contains("not installable"), "{refused}");
    }

    #[test]
    fn bad_names_are_refused_with_reasons() {
        for (name, reason) in [
            ("demo-1.0.zip", "taken only by `tufa import`"),
            ("demo-1.0.tgz", "taken only by `tufa import`"),
            ("demo-1.0.exe", "bdist_wininst"),
            ("demo-1.0-py2.7.egg", "pip stopped installing eggs"),
            ("demo-1.0.txt", "invalid file extension"),
            ("demo-1.0-py3.whl", "a wheel is named"),
            ("demo-1.0-x-py3-none-any.whl", "build tag"),
            ("demo-notaversion-py3-none-any.whl", "PEP 440"),
            ("demo.tar.gz", "source distribution is named"),
            ("../demo-1.0.tar.gz", "path separators"),
            ("demo 1-1.0.tar.gz", "ASCII letters"),
            ("-1.0.tar.gz", "invalid project name"),
            (
                &format!("{}-1.0.tar.gz", "a".repeat(MAX_PROJECT_NAME_LEN + 1)),
                "the project name is 234 bytes long, over the limit of 233 bytes",
            ),
            (
                &format!("{}ab-1.0.tar.gz", "a-".repeat(116)),
                "the project name is 234 bytes long",
            ),
            (
                &format!("demo-1{}-py3-none-any.whl", ".0".repeat(64)),
                "the version is 129 bytes long, over the limit of 128 bytes",
            ),
            (
                &format!("{}-1.{}-py3-none-any.whl", "a".repeat(200), "0".repeat(60)),
                "the file name is 280 bytes long, over the limit of 255 bytes",
            ),
        ] {
            let error = DistFilename::parse(name).unwrap_err().to_string();
            assert!(error.contains(reason), "{name}: {error}");
        }
    }
}
