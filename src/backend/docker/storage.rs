//! Docker's disk layers: the imported image where the daemon stores it (its storage driver's
//! layer directories, from `docker image inspect`), and Docker's own binaries with their shared
//! libraries. `usage::disk` counts them by the one layer rule.

use std::path::PathBuf;

use super::client::Client;
use super::DockerError;
use crate::backend::{DiskLayers, Layer};
use crate::image::Image;

/// The programs a Docker installation runs a container with: the CLI, the daemons, the shim,
/// the OCI runtime and the init Docker offers (`--init`).
pub const DOCKER_BINARIES: [&str; 6] = [
    "docker",
    "dockerd",
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "docker-init",
];

/// The imported image as Docker stores it: its storage driver and the directories that hold
/// its unpacked files (for overlay2, the layer directories `UpperDir` and `LowerDir` from
/// `docker image inspect`'s `GraphDriver.Data`), and the size Docker itself reports.
#[derive(Debug, Clone)]
pub struct StoredImage {
    driver: String,
    pub dirs: Vec<PathBuf>,
    size: u64,
}

impl StoredImage {
    pub(super) fn describe(&self) -> String {
        self.describe_for("docker", "Docker")
    }

    /// The description with the engine's command and name (Podman's `image inspect` reports
    /// the same `GraphDriver`).
    pub(crate) fn describe_for(&self, command: &str, engine: &str) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        format!(
            "{} layer directories ({command} image inspect GraphDriver.Data: UpperDir, LowerDir) \
             counted file by file: {}; {engine} reports {} B",
            self.driver,
            dirs.join(", "),
            self.size
        )
    }
}

pub(super) fn stored_image(client: &Client, tag: &str) -> Result<StoredImage, DockerError> {
    let text = client.run(
        "image inspect",
        &["image", "inspect", "--format", "{{json .}}", tag],
    )?;
    parse_stored_image(&text).map_err(DockerError::Storage)
}

/// The pure part of [`stored_image`]: the directories that exist on this host. Podman's
/// `image inspect` describes its storage in the same words, so its backend reads it here too.
pub(crate) fn parse_stored_image(json: &str) -> Result<StoredImage, String> {
    let bad = |what: &str| what.to_string();
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let graph = &v["GraphDriver"];
    let driver = graph["Name"]
        .as_str()
        .ok_or_else(|| bad("no GraphDriver.Name"))?;
    let mut dirs = Vec::new();
    for key in ["UpperDir", "LowerDir", "Dir"] {
        if let Some(list) = graph["Data"][key].as_str() {
            dirs.extend(list.split(':').filter(|d| !d.is_empty()).map(PathBuf::from));
        }
    }
    if dirs.is_empty() {
        return Err(bad(&format!(
            "the {driver} driver names no UpperDir, LowerDir or Dir"
        )));
    }
    if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
        return Err(bad(&format!(
            "{} is not a directory on this host (is the daemon remote?)",
            missing.display()
        )));
    }
    Ok(StoredImage {
        driver: driver.to_string(),
        dirs,
        size: v["Size"].as_u64().unwrap_or(0),
    })
}

/// The image's `app` and `libs` layers as Docker stores them: each file the image names, at the
/// same place in Docker's layer directories, and the directories themselves for the rest.
pub(crate) fn image_layers(image: &Image, stored: &[PathBuf]) -> DiskLayers {
    let mut layers = DiskLayers::new();
    for (layer, files) in image.layer_files() {
        let mut mapped = Vec::new();
        for f in files {
            let Ok(rel) = f.strip_prefix(image.rootfs()) else {
                continue;
            };
            if rel.as_os_str().is_empty() {
                continue;
            }
            mapped.extend(stored.iter().map(|d| d.join(rel)).filter(|p| p.exists()));
        }
        layers.insert(layer, mapped);
    }
    layers
        .entry(Layer::Libs)
        .or_default()
        .extend(stored.iter().cloned());
    layers
}

/// Docker's binaries, found on the host's PATH, with their shared libraries.
pub(super) fn runtime_files() -> Result<Vec<PathBuf>, DockerError> {
    let found: Vec<PathBuf> = DOCKER_BINARIES
        .iter()
        .filter_map(|b| crate::backend::find_binary(b))
        .collect();
    crate::backend::with_libraries(&found).map_err(DockerError::Libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_image_is_read_from_graph_driver_data() {
        let dir = tempfile::tempdir().unwrap();
        let (upper, lower) = (dir.path().join("u"), dir.path().join("l"));
        std::fs::create_dir(&upper).unwrap();
        std::fs::create_dir(&lower).unwrap();
        let json = serde_json::json!({
            "Size": 1234,
            "GraphDriver": {"Name": "overlay2", "Data": {
                "UpperDir": upper, "LowerDir": lower, "WorkDir": dir.path().join("w"),
                "MergedDir": dir.path().join("m")}}
        });
        let stored = parse_stored_image(&json.to_string()).unwrap();
        assert_eq!(stored.dirs, vec![upper, lower]);
        assert!(stored.describe().contains("Docker reports 1234 B"));
        let missing = serde_json::json!({"GraphDriver": {"Name": "overlay2",
            "Data": {"UpperDir": dir.path().join("gone")}}});
        let e = parse_stored_image(&missing.to_string()).unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
        let none = serde_json::json!({"GraphDriver": {"Name": "vfs", "Data": null}});
        assert!(parse_stored_image(&none.to_string()).is_err());
    }
}
