//! Tiny Python projects built into real wheels and sdists by `python -m build` (flit-core
//! backend, no network), for the tests to upload and install.

use std::fs;
use std::path::{Path, PathBuf};

use crate::PythonEnv;

/// A project to build: name, version, and its dependencies as PEP 508 strings.
pub struct Project<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub dependencies: &'a [&'a str],
    /// Goes into the module, so two builds of one version can differ in content.
    pub payload: &'a str,
}

/// The two files a build produced.
pub struct Built {
    pub wheel: PathBuf,
    pub sdist: PathBuf,
}

impl Project<'_> {
    /// Builds the wheel and sdist under `dir`.
    pub fn build(&self, env: &PythonEnv, dir: &Path) -> Built {
        let module = self.name.to_lowercase().replace(['-', '.'], "_");
        let source = dir.join(format!("src-{}-{}", self.name, self.version));
        fs::create_dir_all(source.join(&module)).unwrap();
        let dependencies: Vec<String> =
            self.dependencies.iter().map(|d| format!("{d:?}")).collect();
        fs::write(
            source.join("pyproject.toml"),
            format!(
                "[build-system]\nrequires = [\"flit_core>=3.2,<5\"]\nbuild-backend = \"flit_core.buildapi\"\n\n\
                 [project]\nname = \"{}\"\nversion = \"{}\"\ndescription = \"A Tufa test project\"\n\
                 requires-python = \">=3.8\"\ndependencies = [{}]\n\n[tool.flit.module]\nname = \"{module}\"\n",
                self.name,
                self.version,
                dependencies.join(", ")
            ),
        )
        .unwrap();
        fs::write(
            source.join(&module).join("__init__.py"),
            format!(
                "__version__ = {:?}\nPAYLOAD = {:?}\n",
                self.version, self.payload
            ),
        )
        .unwrap();
        let out = dir.join(format!("dist-{}-{}", self.name, self.version));
        let output = env
            .command("python")
            .args(["-m", "build", "--no-isolation", "--outdir"])
            .arg(&out)
            .arg(&source)
            .output()
            .expect("running python -m build");
        assert!(
            output.status.success(),
            "building {} {} failed:\n{}{}",
            self.name,
            self.version,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut built = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>();
        built.sort();
        let find = |suffix: &str| {
            built
                .iter()
                .find(|p| p.to_string_lossy().ends_with(suffix))
                .unwrap_or_else(|| panic!("no {suffix} built in {}", out.display()))
                .clone()
        };
        Built {
            wheel: find(".whl"),
            sdist: find(".tar.gz"),
        }
    }
}

/// A minimal valid wheel built in memory (a module, `METADATA`, `WHEEL` and a `RECORD` listing
/// them), for tests and benchmarks that need many distinct files faster than a build backend makes
/// them.
pub fn minimal_wheel(name: &str, version: &str) -> Vec<u8> {
    let module = name.to_lowercase().replace(['-', '.'], "_");
    wheel_with(
        name,
        version,
        &[(
            format!("{module}/__init__.py"),
            format!("__version__ = {version:?}\n").into_bytes(),
        )],
    )
}

/// A valid wheel holding `files` (path in the archive, content) besides its `.dist-info`, every
/// file listed in `RECORD` with its sha256 and size, as installers and PyPI check them.
pub fn wheel_with(name: &str, version: &str, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    zip_entries(wheel_entries(name, version, files))
}

/// A valid wheel of a module whose `METADATA` is `metadata` exactly (which must name `name` and
/// `version`): for tests of what an index does with what uploaders write there.
pub fn wheel_with_metadata(name: &str, version: &str, metadata: &str) -> Vec<u8> {
    let module = name.to_lowercase().replace(['-', '.'], "_");
    zip_entries(wheel_entries_with_metadata(
        name,
        version,
        &[(format!("{module}/__init__.py"), b"\n".to_vec())],
        metadata,
    ))
}

fn zip_entries(entries: Vec<(String, Vec<u8>)>) -> Vec<u8> {
    use std::io::Write;
    let mut buffer = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buffer);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (path, content) in entries {
        zip.start_file(path, options).unwrap();
        zip.write_all(&content).unwrap();
    }
    zip.finish().unwrap();
    buffer.into_inner()
}

/// The entries of [`wheel_with`]'s wheel, in archive order with `RECORD` last, for tests that
/// write the archive themselves.
pub fn wheel_entries(
    name: &str,
    version: &str,
    files: &[(String, Vec<u8>)],
) -> Vec<(String, Vec<u8>)> {
    wheel_entries_with_metadata(
        name,
        version,
        files,
        &format!(
            "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.8\n"
        ),
    )
}

/// [`wheel_entries`] with `metadata` as the `METADATA` file.
pub fn wheel_entries_with_metadata(
    name: &str,
    version: &str,
    files: &[(String, Vec<u8>)],
    metadata: &str,
) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    let stem = format!("{}-{version}", name.to_lowercase().replace(['-', '.'], "_"));
    let dist_info = format!("{stem}.dist-info");
    let mut all: Vec<(String, Vec<u8>)> = files.to_vec();
    all.push((
        format!("{dist_info}/METADATA"),
        metadata.as_bytes().to_vec(),
    ));
    all.push((
        format!("{dist_info}/WHEEL"),
        b"Wheel-Version: 1.0\nGenerator: tufa-testkit\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            .to_vec(),
    ));
    let mut record = String::new();
    for (path, content) in &all {
        let digest = ring::digest::digest(&ring::digest::SHA256, content);
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        record.push_str(&format!("{path},sha256={hash},{}\n", content.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    all.push((format!("{dist_info}/RECORD"), record.into_bytes()));
    all
}
