//! Which pods a label selector picks, and which selector a Deployment has.
//!
//! In a cluster this comes from the Kubernetes API ([`crate::cluster`]: watches of pods and
//! Deployments kept in memory). Without one — the local demo, a lab — it comes from a pods file
//! that the demo (or an operator) writes, reloaded when it changes:
//!
//! ```yaml
//! pods:
//!   - { namespace: render, name: worker-0, labels: { app: framescale-worker } }
//! deployments:
//!   - { namespace: render, name: worker, selector: app=framescale-worker }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Deserialize;

use crate::selector::{self, Selector};

/// A pod of the file and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodInfo {
    name: String,
    labels: BTreeMap<String, String>,
}

/// Why pods cannot be listed (served as 503).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ListError {
    /// The watches of the Kubernetes API have not listed yet.
    #[error(
        "cannot list pods: the watches of pods and Deployments have not listed from the Kubernetes API yet"
    )]
    NotSynced,
    /// A watched Deployment's selector cannot be read.
    #[error("cannot list pods: deployment {namespace}/{name} has a bad selector: {source}")]
    BadDeploymentSelector {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Why.
        source: selector::Error,
    },
    /// The pods file cannot be read.
    #[error("cannot list pods: {path}: {source}")]
    FileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Arc<std::io::Error>,
    },
    /// The pods file is not valid.
    #[error("cannot list pods: {path}: {source}")]
    FileInvalid {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Arc<FileError>,
    },
}

/// What is wrong with the text of a pods file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not YAML of the expected shape.
    #[error(transparent)]
    Shape(#[from] serde_yaml_ng::Error),
    /// A Deployment's selector does not parse.
    #[error("deployment {deployment}: {source}")]
    Selector {
        /// The Deployment's name.
        deployment: String,
        /// Why.
        source: selector::Error,
    },
}

/// Resolves selectors to pods.
pub trait PodLister: Send + Sync {
    /// The names of the pods of `namespace` that `selector` picks.
    fn pods(&self, namespace: &str, selector: &Selector) -> Result<Vec<String>, ListError>;
    /// The selector of Deployment `name`, `None` if there is no such Deployment.
    fn deployment_selector(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Selector>, ListError>;
}

/// Pods and Deployments from a file, re-read when its modification time changes.
#[derive(Debug)]
pub struct PodsFile {
    path: PathBuf,
    cache: Mutex<Option<(SystemTime, Parsed)>>,
}

#[derive(Debug, Clone, Default)]
struct Parsed {
    pods: BTreeMap<String, Vec<PodInfo>>,
    deployments: BTreeMap<(String, String), Selector>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    pods: Vec<PodEntry>,
    #[serde(default)]
    deployments: Vec<DeploymentEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PodEntry {
    namespace: String,
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentEntry {
    namespace: String,
    name: String,
    selector: String,
}

impl PodsFile {
    /// A lister over `path`; the file is read on first use and when it changes.
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        PodsFile {
            path,
            cache: Mutex::new(None),
        }
    }

    fn parsed(&self) -> Result<Parsed, ListError> {
        let unreadable = |source| ListError::FileUnreadable {
            path: self.path.clone(),
            source: Arc::new(source),
        };
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(unreadable)?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, parsed)) = cache.as_ref()
            && *at == modified
        {
            return Ok(parsed.clone());
        }
        let text = std::fs::read_to_string(&self.path).map_err(unreadable)?;
        let parsed = parse(&text).map_err(|source| ListError::FileInvalid {
            path: self.path.clone(),
            source: Arc::new(source),
        })?;
        *cache = Some((modified, parsed.clone()));
        Ok(parsed)
    }
}

fn parse(text: &str) -> Result<Parsed, FileError> {
    let file: File = serde_yaml_ng::from_str(text)?;
    let mut parsed = Parsed::default();
    for pod in file.pods {
        parsed.pods.entry(pod.namespace).or_default().push(PodInfo {
            name: pod.name,
            labels: pod.labels,
        });
    }
    for deployment in file.deployments {
        let selector =
            Selector::parse(&deployment.selector).map_err(|source| FileError::Selector {
                deployment: deployment.name.clone(),
                source,
            })?;
        parsed
            .deployments
            .insert((deployment.namespace, deployment.name), selector);
    }
    Ok(parsed)
}

impl PodLister for PodsFile {
    fn pods(&self, namespace: &str, selector: &Selector) -> Result<Vec<String>, ListError> {
        Ok(self
            .parsed()?
            .pods
            .remove(namespace)
            .unwrap_or_default()
            .into_iter()
            .filter(|pod| selector.matches(&pod.labels))
            .map(|pod| pod.name)
            .collect())
    }

    fn deployment_selector(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Selector>, ListError> {
        Ok(self
            .parsed()?
            .deployments
            .remove(&(namespace.to_owned(), name.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_is_read_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.yaml");
        std::fs::write(&path, "pods:\n  - { namespace: render, name: w-0, labels: { app: w } }\ndeployments:\n  - { namespace: render, name: w, selector: app=w }\n").unwrap();
        let lister = PodsFile::new(path.clone());
        let all = Selector::default();
        assert_eq!(lister.pods("render", &all).unwrap(), ["w-0"]);
        assert_eq!(
            lister
                .pods("render", &Selector::parse("app=w").unwrap())
                .unwrap(),
            ["w-0"]
        );
        assert!(
            lister
                .pods("render", &Selector::parse("app=x").unwrap())
                .unwrap()
                .is_empty()
        );
        assert!(lister.pods("other", &all).unwrap().is_empty());
        assert_eq!(
            lister.deployment_selector("render", "w").unwrap(),
            Some(Selector::parse("app=w").unwrap())
        );
        assert_eq!(lister.deployment_selector("render", "x").unwrap(), None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "pods:\n  - { namespace: render, name: w-1 }\n").unwrap();
        let file = std::fs::File::options().append(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() + std::time::Duration::from_secs(1))
            .unwrap();
        assert_eq!(lister.pods("render", &all).unwrap(), ["w-1"]);
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(parse("pods: [ { namespace: a } ]").is_err());
        assert!(
            matches!(parse("deployments: [ { namespace: a, name: b, selector: 'a in' } ]"),
                Err(FileError::Selector { deployment, .. }) if deployment == "b")
        );
        let lister = PodsFile::new("/nonexistent/pods.yaml".into());
        assert!(
            lister
                .pods("a", &Selector::default())
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/pods.yaml")
        );
    }
}
