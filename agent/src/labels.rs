//! Series labels of a process: `service_name`, `host`, `exe`, and container
//! and Kubernetes identity when the cgroup path shows them.
//!
//! Everything here reads `/proc` and container runtime files, so it runs
//! once per process (at its first sample or after an `exec`), never per
//! sample. Container metadata is cached per container id.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, ServiceRule, Targets, glob_match};

/// A series' labels, sorted by name; `service_name` is always present.
pub use firewatch_profile::Labels;

/// What the cgroup path of a process tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// The systemd service (`nginx` for `.../nginx.service`).
    pub systemd_unit: Option<String>,
    /// The 64-hex-digit container id.
    pub container_id: Option<String>,
    /// The Kubernetes pod UID.
    pub pod_uid: Option<String>,
}

/// Container identity read from the container runtime's files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    /// The container's name.
    pub name: Option<String>,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// Kubernetes pod name.
    pub pod: Option<String>,
}

/// The result of describing one process.
#[derive(Clone, Debug)]
pub struct Description {
    /// Its series labels.
    pub labels: Labels,
    /// Whether the targets select it.
    pub wanted: bool,
}

/// Describes processes for series labels and target matching.
pub struct Labeler {
    host: String,
    static_labels: BTreeMap<String, String>,
    rules: Vec<ServiceRule>,
    targets: Targets,
    root: PathBuf,
    containers: HashMap<String, ContainerMeta>,
    own_pid: u32,
}

const MAX_METADATA_BYTES: u64 = 1 << 20;

impl Labeler {
    /// A labeler for the configuration; files are read under `/`.
    pub fn new(config: &Config) -> Labeler {
        Labeler {
            host: config.host.clone().unwrap_or_else(host_name),
            static_labels: config.labels.clone(),
            rules: config.services.clone(),
            targets: config.targets.clone(),
            root: PathBuf::from("/"),
            containers: HashMap::new(),
            own_pid: std::process::id(),
        }
    }

    /// True when `pid` is wanted whatever its executable and cgroup are
    /// (no target, or a pid target), so describing it can wait.
    pub fn wanted_by_pid(&self, pid: u32) -> Option<bool> {
        if pid == self.own_pid && !self.targets.pids.contains(&pid) {
            // The agent reports its own cost in its logs; profiling itself
            // would make it read its own debug information.
            return Some(false);
        }
        if self.targets.is_all() || self.targets.pids.contains(&pid) {
            return Some(true);
        }
        self.targets.pids_only().then_some(false)
    }

    /// The only processes the targets can select, when they name pids and
    /// nothing else.
    pub fn only_pids(&self) -> Option<&[u32]> {
        (!self.targets.is_all() && self.targets.pids_only()).then_some(self.targets.pids.as_slice())
    }

    /// The labels of kernel threads, all in one series.
    pub fn kernel_labels(&self) -> Labels {
        self.finish(
            "kernel".to_owned(),
            "[kernel]".to_owned(),
            None,
            &ContainerMeta::default(),
        )
    }

    /// Reads what `/proc` says about `pid` (`comm` is the fallback name of a
    /// process that has already gone) and derives its labels.
    pub fn describe(&mut self, pid: u32, comm: &str) -> Description {
        let proc_dir = self.root.join("proc").join(pid.to_string());
        let exe_path = std::fs::read_link(proc_dir.join("exe")).ok();
        let exe = exe_path
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| {
                n.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_owned()
            })
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| comm.to_owned());
        let cgroup = read_capped(&proc_dir.join("cgroup"))
            .map(|t| cgroup_path(&t).to_owned())
            .unwrap_or_default();
        let info = parse_cgroup(&cgroup);
        let meta = match &info.container_id {
            Some(id) => self.container_meta(id),
            None => ContainerMeta::default(),
        };
        let wanted = self.wanted_by_pid(pid) != Some(false)
            && (self.targets.is_all()
                || self.targets.pids.contains(&pid)
                || self.targets.executables.iter().any(|p| glob_match(p, &exe))
                || self
                    .targets
                    .cgroups
                    .iter()
                    .any(|c| !cgroup.is_empty() && cgroup.contains(c.as_str())));
        let rule = self.rules.iter().find(|r| {
            r.exe.as_deref().is_none_or(|p| glob_match(p, &exe))
                && r.cgroup.as_deref().is_none_or(|c| cgroup.contains(c))
        });
        let service = rule
            .map(|r| r.service_name.clone())
            .or_else(|| info.systemd_unit.clone())
            .or_else(|| meta.name.clone())
            .or_else(|| {
                let cmdline = read_capped(&proc_dir.join("cmdline"))?;
                let args: Vec<&str> = cmdline.split('\0').filter(|a| !a.is_empty()).collect();
                python_program(&exe, args.get(1..)?)
            })
            .unwrap_or_else(|| exe.clone());
        let mut meta = meta;
        if info.container_id.is_none() {
            meta = ContainerMeta::default();
        }
        let labels = self.finish(service, exe, info.container_id.as_deref(), &meta);
        Description { labels, wanted }
    }

    fn finish(
        &self,
        service: String,
        exe: String,
        container_id: Option<&str>,
        meta: &ContainerMeta,
    ) -> Labels {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        map.insert("service_name".into(), service);
        map.insert("host".into(), self.host.clone());
        map.insert("exe".into(), exe);
        if let Some(id) = container_id {
            map.insert("container_id".into(), id.to_owned());
        }
        for (name, value) in [
            ("k8s_namespace", &meta.namespace),
            ("k8s_pod", &meta.pod),
            ("k8s_container", &meta.name),
        ] {
            if let (Some(v), true) = (value, meta.pod.is_some()) {
                map.insert(name.into(), v.clone());
            }
        }
        for (k, v) in &self.static_labels {
            map.insert(k.clone(), v.clone());
        }
        map.retain(|_, v| !v.is_empty());
        map
    }

    fn container_meta(&mut self, id: &str) -> ContainerMeta {
        if let Some(meta) = self.containers.get(id) {
            return meta.clone();
        }
        let meta = self.read_container_meta(id);
        if self.containers.len() > 4096 {
            self.containers.clear();
        }
        self.containers.insert(id.to_owned(), meta.clone());
        meta
    }

    fn read_container_meta(&self, id: &str) -> ContainerMeta {
        // Docker: the name is in the container's config.
        let docker = self
            .root
            .join("var/lib/docker/containers")
            .join(id)
            .join("config.v2.json");
        if let Some(v) = read_json(&docker) {
            let name = v["Name"]
                .as_str()
                .map(|n| n.trim_start_matches('/').to_owned());
            return ContainerMeta {
                name,
                ..ContainerMeta::default()
            };
        }
        // containerd (Kubernetes CRI): the OCI bundle carries CRI annotations.
        let tasks = self
            .root
            .join("run/containerd/io.containerd.runtime.v2.task");
        if let Ok(namespaces) = std::fs::read_dir(&tasks) {
            for ns in namespaces.flatten() {
                if let Some(v) = read_json(&ns.path().join(id).join("config.json")) {
                    let a = &v["annotations"];
                    return ContainerMeta {
                        name: json_str(&a["io.kubernetes.cri.container-name"]),
                        namespace: json_str(&a["io.kubernetes.cri.sandbox-namespace"]),
                        pod: json_str(&a["io.kubernetes.cri.sandbox-name"]),
                    };
                }
            }
        }
        // CRI-O.
        let crio = self
            .root
            .join("run/containers/storage/overlay-containers")
            .join(id)
            .join("userdata/config.json");
        if let Some(v) = read_json(&crio) {
            let a = &v["annotations"];
            return ContainerMeta {
                name: json_str(&a["io.kubernetes.container.name"]),
                namespace: json_str(&a["io.kubernetes.pod.namespace"]),
                pod: json_str(&a["io.kubernetes.pod.name"]),
            };
        }
        ContainerMeta::default()
    }
}

fn json_str(v: &serde_json::Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// For a Python interpreter (`python`, `python3`, `python3.11`, ...), what
/// it runs, from its arguments: the top-level package of `-m MODULE`
/// (`gunicorn` for `-m gunicorn.app.wsgiapp`), else the script's file name
/// without `.py` (`app` for `app.py`); `None` for `-c`, a bare REPL or
/// another executable.
pub fn python_program(exe: &str, args: &[&str]) -> Option<String> {
    let version = exe.strip_prefix("python")?;
    if !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let mut args = args.iter();
    while let Some(&arg) = args.next() {
        match arg {
            "-m" => {
                return args
                    .next()
                    .and_then(|m| m.split('.').next())
                    .map(str::to_owned);
            }
            "-c" | "-" => return None,
            // Options that take the next argument.
            "-X" | "-W" | "-Q" => {
                args.next();
            }
            _ if arg.starts_with("-m") && arg.len() > 2 => {
                return arg[2..].split('.').next().map(str::to_owned);
            }
            _ if arg.starts_with("-c") => return None,
            _ if arg.starts_with('-') => {}
            script => {
                let name = Path::new(script)
                    .file_name()?
                    .to_string_lossy()
                    .into_owned();
                let stem = name.strip_suffix(".py").unwrap_or(&name);
                return (!stem.is_empty()).then(|| stem.to_owned());
            }
        }
    }
    None
}

fn read_capped(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_METADATA_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&read_capped(path)?).ok()
}

/// The machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The cgroup path from `/proc/PID/cgroup`: the v2 entry, else the v1 `cpu`
/// or `name=systemd` hierarchy, else the first.
pub fn cgroup_path(text: &str) -> &str {
    let entries: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?, parts.next()?))
        })
        .collect();
    let pick = |want: &dyn Fn(&str) -> bool| {
        entries
            .iter()
            .find(|(controllers, _)| want(controllers))
            .map(|(_, path)| *path)
    };
    pick(&|c| c.is_empty())
        .or_else(|| pick(&|c| c.split(',').any(|x| x == "cpu")))
        .or_else(|| pick(&|c| c == "name=systemd"))
        .or_else(|| entries.first().map(|(_, p)| *p))
        .unwrap_or("")
}

/// Extracts systemd unit, container id and pod UID from a cgroup path.
pub fn parse_cgroup(path: &str) -> CgroupInfo {
    let mut info = CgroupInfo::default();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if let Some(unit) = part.strip_suffix(".service") {
            info.systemd_unit = Some(unit.to_owned());
        }
        if let Some(id) = hex_run(part, 64) {
            info.container_id = Some(id.to_owned());
        }
        if let Some(uid) = pod_uid(part) {
            info.pod_uid = Some(uid);
        }
    }
    // Units inside a container are the container's business, not a service name.
    if info.container_id.is_some() {
        info.systemd_unit = None;
    }
    info
}

fn hex_run(s: &str, len: usize) -> Option<&str> {
    let bytes = s.as_bytes();
    let mut start = 0;
    while start + len <= bytes.len() {
        let run = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            .count();
        if run == len {
            return s.get(start..start + len);
        }
        start += run.max(1);
    }
    None
}

fn pod_uid(part: &str) -> Option<String> {
    let i = part.rfind("pod")?;
    let rest = part[i + 3..].trim_end_matches(".slice");
    let uid = rest.replace('_', "-");
    let ok = uid.len() == 36
        && uid
            .bytes()
            .all(|b| b == b'-' || (b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    ok.then_some(uid)
}

/// Interns label sets into small ids for the sampler's keys.
#[derive(Default)]
pub struct SeriesTable {
    ids: HashMap<Arc<Labels>, u32>,
    list: Vec<Arc<Labels>>,
}

impl SeriesTable {
    /// The id of a label set, interning it on first sight.
    pub fn intern(&mut self, labels: Labels) -> u32 {
        if let Some(&id) = self.ids.get(&labels) {
            return id;
        }
        let id = self.list.len() as u32;
        let labels = Arc::new(labels);
        self.list.push(Arc::clone(&labels));
        self.ids.insert(labels, id);
        id
    }

    /// The labels of an id.
    pub fn get(&self, id: u32) -> Option<&Arc<Labels>> {
        self.list.get(id as usize)
    }

    /// Number of distinct series.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when no series was interned.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn systemd_service() {
        let i = parse_cgroup("/system.slice/nginx.service");
        assert_eq!(i.systemd_unit.as_deref(), Some("nginx"));
        assert_eq!(i.container_id, None);
    }

    #[test]
    fn docker_and_kubernetes_paths() {
        let i = parse_cgroup(&format!("/system.slice/docker-{CID}.scope"));
        assert_eq!(i.container_id.as_deref(), Some(CID));
        let i = parse_cgroup(&format!("/docker/{CID}"));
        assert_eq!(i.container_id.as_deref(), Some(CID));
        let k = format!(
            "/kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-{CID}.scope"
        );
        let i = parse_cgroup(&k);
        assert_eq!(i.container_id.as_deref(), Some(CID));
        assert_eq!(
            i.pod_uid.as_deref(),
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")
        );
        assert_eq!(i.systemd_unit, None);
    }

    #[test]
    fn cgroup_v2_entry_wins_over_v1() {
        let text = "12:cpu,cpuacct:/docker/abc\n0::/system.slice/sshd.service\n";
        assert_eq!(cgroup_path(text), "/system.slice/sshd.service");
        assert_eq!(cgroup_path("4:cpu,cpuacct:/a\n1:name=systemd:/b\n"), "/a");
    }

    #[test]
    fn own_process_is_described_by_its_executable() {
        let config = Config {
            host: Some("web-1".into()),
            ..Config::default()
        };
        let mut l = Labeler::new(&config);
        let d = l.describe(std::os::unix::process::parent_id(), "fallback");
        let get = |k: &str| d.labels.get(k).cloned();
        assert_eq!(get("host").as_deref(), Some("web-1"));
        assert!(get("exe").is_some_and(|e| e != "fallback"));
        assert!(get("service_name").is_some());
        assert!(d.wanted);
    }

    #[test]
    fn service_rules_and_exe_targets() {
        let config = Config {
            services: vec![ServiceRule {
                service_name: "checkout".into(),
                exe: Some("*".into()),
                cgroup: None,
            }],
            targets: Targets {
                executables: vec!["no-such-exe".into()],
                ..Targets::default()
            },
            ..Config::default()
        };
        let mut l = Labeler::new(&config);
        let d = l.describe(std::os::unix::process::parent_id(), "x");
        assert!(d.labels.get("service_name").map(String::as_str) == Some("checkout"));
        assert!(!d.wanted);
        assert_eq!(l.wanted_by_pid(1), None);
    }

    #[test]
    fn python_processes_are_named_for_what_they_run() {
        let p = |exe: &str, args: &[&str]| python_program(exe, args);
        assert_eq!(p("python3.11", &["app.py"]).as_deref(), Some("app"));
        assert_eq!(
            p("python3", &["-u", "/srv/api/server.py", "--port", "80"]).as_deref(),
            Some("server")
        );
        assert_eq!(
            p("python3", &["-m", "gunicorn", "app:wsgi"]).as_deref(),
            Some("gunicorn")
        );
        assert_eq!(
            p("python3", &["-X", "perf", "-m", "uvicorn.main"]).as_deref(),
            Some("uvicorn")
        );
        assert_eq!(p("python", &["-mhttp.server"]).as_deref(), Some("http"));
        assert_eq!(
            p("python3", &["-W", "ignore", "job.py"]).as_deref(),
            Some("job")
        );
        assert_eq!(p("python3", &["-c", "print(1)"]), None);
        assert_eq!(p("python3", &[]), None);
        assert_eq!(p("python3-config", &["x.py"]), None);
        assert_eq!(p("node", &["app.js"]), None);
    }

    #[test]
    fn series_are_interned() {
        let mut t = SeriesTable::default();
        let a = t.intern(Labels::from([("service_name".into(), "a".into())]));
        let b = t.intern(Labels::from([("service_name".into(), "b".into())]));
        assert_ne!(a, b);
        assert_eq!(
            t.intern(Labels::from([("service_name".into(), "a".into())])),
            a
        );
        assert_eq!(t.len(), 2);
    }
}
