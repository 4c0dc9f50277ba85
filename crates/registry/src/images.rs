//! What an artifact's images are made of, from their manifests and configs: layers with their
//! sizes and the history step that made each, the config's labels, entrypoint and command, and
//! when each was created (the OCI image spec's config, Docker's image config v1.2).

use std::collections::BTreeMap;

use gantry_oci::{manifest, Reference, RepositoryName};
use serde::Serialize;
use serde_json::Value;

use crate::{Registry, Result};

/// One image of an artifact (an index: one per platform).
#[derive(Debug, Clone, Serialize)]
pub struct ImageDetails {
    /// `os/arch[/variant]` as the index lists it; `None` for an artifact that is one image.
    pub platform: Option<String>,
    /// `os/architecture[/variant]` as the image's config says; `None` when it says no OS or
    /// architecture.
    pub config_platform: Option<String>,
    pub digest: String,
    /// RFC 3339, as the config says.
    pub created: Option<String>,
    /// The config's labels (`config.Labels`): user content, shown as text.
    pub labels: BTreeMap<String, String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub layers: Vec<LayerDetails>,
    /// The build steps, oldest first (those that made no layer too).
    pub history: Vec<HistoryStep>,
}

/// A filesystem layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerDetails {
    pub digest: String,
    pub media_type: String,
    /// Compressed, as stored.
    pub size: u64,
    /// The history step that made it, when the config's history lines up with the layers.
    pub created_by: Option<String>,
}

/// One step of an image's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryStep {
    pub created: Option<String>,
    pub created_by: Option<String>,
    pub empty_layer: bool,
}

impl Registry {
    /// The images of `reference` in `name` with their layers, history and labels. Errors: the
    /// manifest's (`ManifestUnknown`, ...); a config that is not JSON reads as empty.
    pub async fn image_details(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<Vec<ImageDetails>> {
        let mut images = Vec::new();
        for (platform, digest) in self.images_of(name, reference).await? {
            let stored = self
                .get_manifest(name, &Reference::Digest(digest.clone()))
                .await?;
            let parsed = manifest::parse(&stored.content, Some(&stored.media_type))?;
            let config: Value = match &parsed.config {
                Some(config) if config.size <= manifest::MAX_MANIFEST_BYTES as u64 => {
                    let bytes = self.blob_bytes(&config.digest, config.size).await?;
                    serde_json::from_slice(&bytes).unwrap_or_default()
                }
                _ => Value::Null,
            };
            images.push(details(platform, digest.to_string(), &parsed, &config));
        }
        Ok(images)
    }
}

impl Registry {
    /// The size analysis of an image of `reference` (an index: the image for `platform`,
    /// e.g. `linux/amd64`): each layer's sizes, the largest files of the final filesystem and
    /// the bytes wasted on files a later layer overwrote or deleted, and the entrypoint
    /// binary's facts — as `gantry analyze` gives them. Every layer is read: seconds for a
    /// large image.
    ///
    /// Errors: `PlatformInvalid` when an index's platform is missing or unknown; the
    /// manifest's; `Body` when a layer cannot be read as a tar stream.
    pub async fn image_analysis(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        platform: Option<&str>,
    ) -> Result<gantry_inspect::analyze::Report> {
        let images = self.images_of(name, reference).await?;
        let (_, digest) =
            crate::scan::image_for_platform(&images, |(p, _)| p.as_deref(), platform)?;
        let digest = digest.clone();
        let details = self
            .image_details(name, &Reference::Digest(digest.clone()))
            .await?
            .pop()
            .expect("an image has its details");
        let stored = self.get_manifest(name, &Reference::Digest(digest)).await?;
        let parsed = manifest::parse(&stored.content, Some(&stored.media_type))?;
        let layers = parsed
            .layers
            .into_iter()
            .zip(details.layers)
            .map(|(descriptor, layer)| (descriptor, layer.created_by))
            .collect();
        let entrypoint = details.entrypoint.first().or(details.cmd.first()).cloned();
        self.walk_layers(layers, move |inputs| {
            gantry_inspect::analyze::analyze(inputs, entrypoint.as_deref())
        })
        .await
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// An image's details from its parsed manifest and config.
fn details(
    platform: Option<String>,
    digest: String,
    parsed: &manifest::ParsedManifest,
    config: &Value,
) -> ImageDetails {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let history: Vec<HistoryStep> = config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|step| HistoryStep {
            created: text(&step["created"]),
            created_by: text(&step["created_by"]),
            empty_layer: step["empty_layer"].as_bool().unwrap_or(false),
        })
        .collect();
    // The steps that made layers, in order: the n-th is the n-th layer's.
    let makers: Vec<&HistoryStep> = history.iter().filter(|s| !s.empty_layer).collect();
    let aligned = makers.len() == parsed.layers.len();
    let layers = parsed
        .layers
        .iter()
        .enumerate()
        .map(|(i, layer)| LayerDetails {
            digest: layer.digest.to_string(),
            media_type: layer.media_type.clone(),
            size: layer.size,
            created_by: aligned.then(|| makers[i].created_by.clone()).flatten(),
        })
        .collect();
    let labels = config["config"]["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    let config_platform = match (text(&config["os"]), text(&config["architecture"])) {
        (Some(os), Some(arch)) => Some(match text(&config["variant"]) {
            Some(variant) => format!("{os}/{arch}/{variant}"),
            None => format!("{os}/{arch}"),
        }),
        _ => None,
    };
    ImageDetails {
        platform,
        config_platform,
        digest,
        created: text(&config["created"]),
        labels,
        entrypoint: strings(&config["config"]["Entrypoint"]),
        cmd: strings(&config["config"]["Cmd"]),
        layers,
        history,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_paired_with_the_history_steps_that_made_them() {
        let layer = |n: u8| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": format!("sha256:{}", format!("{n:02x}").repeat(32)),
                "size": 100 + u64::from(n),
            })
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{}", "c".repeat(64)), "size": 10},
            "layers": [layer(1), layer(2)],
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let parsed = manifest::parse(&bytes, None).unwrap();
        let config = serde_json::json!({
            "created": "2026-01-02T03:04:05Z",
            "os": "linux", "architecture": "arm64", "variant": "v8",
            "config": {"Labels": {"tier": "prod", "evil": "<b>", "n": 1}, "Entrypoint": ["/app"]},
            "history": [
                {"created_by": "ADD base /"},
                {"created_by": "ENV X=1", "empty_layer": true},
                {"created_by": "COPY app /app"},
            ],
        });
        let d = details(None, "sha256:dd".into(), &parsed, &config);
        assert_eq!(d.created.as_deref(), Some("2026-01-02T03:04:05Z"));
        assert_eq!(d.entrypoint, ["/app"]);
        assert_eq!(d.config_platform.as_deref(), Some("linux/arm64/v8"));
        assert_eq!(d.labels.get("evil").map(String::as_str), Some("<b>"));
        assert!(!d.labels.contains_key("n"), "only text labels");
        let made: Vec<_> = d.layers.iter().map(|l| l.created_by.as_deref()).collect();
        assert_eq!(made, [Some("ADD base /"), Some("COPY app /app")]);
        assert_eq!(d.history.len(), 3);
        // A history that does not line up names no step.
        let odd = serde_json::json!({"history": [{"created_by": "only one"}]});
        let d = details(None, "sha256:dd".into(), &parsed, &odd);
        assert!(d.layers.iter().all(|l| l.created_by.is_none()));
    }
}
