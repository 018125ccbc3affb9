//! Reading checkpoints into f32 tensors, and strict loading into models.
//!
//! Containers understood:
//! - PyTorch zip files (`torch.save` since 1.6): a plain state dict (the official PVT
//!   classification releases), or a dict wrapping it under `state_dict` (mmcv / mmdetection /
//!   mmsegmentation) or `model` (DeiT-style training code). Non-tensor entries (mmcv's `meta`,
//!   optimizer state) are skipped. Tensors may be views with any strides; they are gathered.
//! - safetensors files.
//! The zip reader is the `zip` 2.x crate: `zip` 9.x (which candle uses) rejects some files
//! written by torch 2.x ("Invalid Central Directory header"), seen on the test fixtures.
//! Legacy (pre-1.6, non-zip) PyTorch files are recognised and refused with a conversion recipe.
//! Storage may be f32, f16, bf16 or f64 (and integer buffers); everything becomes f32 on load.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use candle::pickle::{Object, Stack};
use candle::{DType, Device, Shape, Tensor};

/// The container a checkpoint file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// PyTorch >= 1.6 zip serialisation.
    TorchZip,
    /// safetensors.
    Safetensors,
}

impl std::fmt::Display for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Container::TorchZip => "PyTorch zip (.pth)",
            Container::Safetensors => "safetensors",
        })
    }
}

/// All tensors of a checkpoint file, converted to f32 on the CPU, keyed by their names in the
/// file (after unwrapping `state_dict` / `model` and stripping a DataParallel `module.` prefix).
#[derive(Debug)]
pub struct Checkpoint {
    /// The file this came from.
    pub path: PathBuf,
    /// Its container.
    pub container: Container,
    /// The top-level key the state dict was found under, if any (`state_dict`, `model`).
    pub wrapper: Option<String>,
    /// The tensors, as f32.
    pub tensors: BTreeMap<String, Tensor>,
    /// The dtype each tensor had in the file.
    pub stored_dtypes: BTreeMap<String, DType>,
    /// Entries of the state dict that were not tensors (skipped).
    pub skipped: Vec<String>,
}

const LEGACY_HELP: &str = "this is a legacy (PyTorch < 1.6, non-zip) checkpoint, which is not supported; \
convert it once with PyTorch: python -c \"import torch; torch.save(torch.load('IN.pth', map_location='cpu'), 'OUT.pth')\" \
(torch >= 1.6 writes the zip format), or to safetensors with `safetensors.torch.save_file`";

/// Sniffs the container from the first bytes of a file.
pub fn sniff_container(path: &Path) -> Result<Container> {
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("cannot open checkpoint {}", path.display()))?;
    let n =
        read_up_to(&mut f, &mut head).with_context(|| format!("cannot read {}", path.display()))?;
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") {
        return Ok(Container::TorchZip);
    }
    if n >= 9 && head[8] == b'{' {
        let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let file_len = std::fs::metadata(path)?.len();
        if len + 8 <= file_len {
            return Ok(Container::Safetensors);
        }
    }
    if n >= 2 && head[0] == 0x80 && head[1] <= 5 {
        bail!("{}: {LEGACY_HELP}", path.display());
    }
    bail!(
        "{}: not a checkpoint this program can read (neither a PyTorch zip file nor safetensors; first bytes {:02x?})",
        path.display(),
        head
    )
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

impl Checkpoint {
    /// Reads every tensor of `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let container = sniff_container(path)?;
        let mut ckpt = match container {
            Container::TorchZip => read_torch_zip(path)?,
            Container::Safetensors => read_safetensors(path)?,
        };
        // DataParallel prefix.
        if !ckpt.tensors.is_empty() && ckpt.tensors.keys().all(|k| k.starts_with("module.")) {
            ckpt.tensors = std::mem::take(&mut ckpt.tensors)
                .into_iter()
                .map(|(k, v)| (k["module.".len()..].to_string(), v))
                .collect();
            ckpt.stored_dtypes = std::mem::take(&mut ckpt.stored_dtypes)
                .into_iter()
                .map(|(k, v)| (k["module.".len()..].to_string(), v))
                .collect();
        }
        if ckpt.tensors.is_empty() {
            bail!("{}: the checkpoint holds no tensors", path.display());
        }
        Ok(ckpt)
    }

    /// Number of scalar parameters over all tensors.
    pub fn num_elements(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count()).sum()
    }

    /// Distinct storage dtypes with their tensor counts.
    pub fn dtype_counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for d in self.stored_dtypes.values() {
            *m.entry(format!("{d:?}").to_lowercase()).or_insert(0) += 1;
        }
        m
    }
}

fn read_safetensors(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: invalid safetensors file: {e}", path.display()))?;
    let mut tensors = BTreeMap::new();
    let mut stored_dtypes = BTreeMap::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F64 => DType::F64,
            safetensors::Dtype::I64 => DType::I64,
            safetensors::Dtype::U8 => DType::U8,
            other => bail!(
                "{}: tensor `{name}` has unsupported dtype {other:?}",
                path.display()
            ),
        };
        let shape = view.shape().to_vec();
        let values = bytes_to_f32(view.data(), dtype)
            .with_context(|| format!("{}: tensor `{name}`", path.display()))?;
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?;
        stored_dtypes.insert(name.clone(), dtype);
        tensors.insert(name, t);
    }
    Ok(Checkpoint {
        path: path.to_owned(),
        container: Container::Safetensors,
        wrapper: None,
        tensors,
        stored_dtypes,
        skipped: vec![],
    })
}

fn bytes_to_f32(data: &[u8], dtype: DType) -> Result<Vec<f32>> {
    let sz = dtype.size_in_bytes();
    if data.len() % sz != 0 {
        bail!("byte length {} is not a multiple of {sz}", data.len());
    }
    let chunks = data.chunks_exact(sz);
    Ok(match dtype {
        DType::F32 => chunks
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        DType::F16 => chunks
            .map(|c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f32())
            .collect(),
        DType::BF16 => chunks
            .map(|c| half::bf16::from_le_bytes(c.try_into().unwrap()).to_f32())
            .collect(),
        DType::F64 => chunks
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        DType::I64 => chunks
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        DType::U8 => data.iter().map(|&b| b as f32).collect(),
        other => bail!("unsupported storage dtype {other:?}"),
    })
}

fn read_torch_zip(path: &Path) -> Result<Checkpoint> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| anyhow!("{}: corrupt zip container: {e}", path.display()))?;
    let pkl_name = zip
        .file_names()
        .map(str::to_owned)
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| {
            anyhow!(
                "{}: zip file without data.pkl: not a PyTorch checkpoint",
                path.display()
            )
        })?;
    let root = {
        let reader = zip.by_name(&pkl_name)?;
        let mut reader = std::io::BufReader::new(reader);
        let mut stack = Stack::empty();
        stack
            .read_loop(&mut reader)
            .map_err(|e| anyhow!("{}: cannot parse {pkl_name}: {e}", path.display()))?;
        stack
            .finalize()
            .map_err(|e| anyhow!("{}: cannot parse {pkl_name}: {e}", path.display()))?
    };
    let dir = PathBuf::from(pkl_name.strip_suffix(".pkl").expect("ends with .pkl"));

    let top = as_dict(root)
        .ok_or_else(|| anyhow!("{}: the top-level object is not a dict", path.display()))?;
    let top_keys: Vec<String> = top.iter().map(|(k, _)| key_string(k)).collect();
    let (wrapper, entries) = if top.iter().any(|(_, v)| is_tensor(v)) {
        (None, top)
    } else {
        let mut found = None;
        let mut top = top;
        for key in ["state_dict", "model", "module", "net"] {
            if let Some(pos) = top.iter().position(|(k, _)| key_string(k) == key) {
                let (_, v) = top.swap_remove(pos);
                if let Some(d) = as_dict(v) {
                    found = Some((Some(key.to_string()), d));
                    break;
                }
            }
        }
        found.ok_or_else(|| {
            anyhow!(
                "{}: no state dict found: the top-level dict has no tensors and no `state_dict` or `model` entry (keys: {})",
                path.display(),
                top_keys.join(", ")
            )
        })?
    };

    let mut storages: HashMap<String, (DType, Vec<f32>)> = HashMap::new();
    let mut tensors = BTreeMap::new();
    let mut stored_dtypes = BTreeMap::new();
    let mut skipped = vec![];
    for (k, v) in entries {
        let name = key_string(&k);
        let info = match v.into_tensor_info(k, &dir) {
            Ok(Some(info)) => info,
            Ok(None) => {
                skipped.push(name);
                continue;
            }
            Err(e) => bail!("{}: entry `{name}`: {e}", path.display()),
        };
        if !storages.contains_key(&info.path) {
            let mut rec = zip.by_name(&info.path).map_err(|e| {
                anyhow!(
                    "{}: tensor `{name}`: missing storage record {}: {e}",
                    path.display(),
                    info.path
                )
            })?;
            let mut bytes = Vec::with_capacity(rec.size() as usize);
            rec.read_to_end(&mut bytes).with_context(|| {
                format!(
                    "{}: tensor `{name}`: truncated storage {}",
                    path.display(),
                    info.path
                )
            })?;
            let vals = bytes_to_f32(&bytes, info.dtype)
                .with_context(|| format!("{}: tensor `{name}`", path.display()))?;
            storages.insert(info.path.clone(), (info.dtype, vals));
        }
        let (dtype, storage) = &storages[&info.path];
        let layout = &info.layout;
        let offset = layout.start_offset() / dtype.size_in_bytes();
        let values =
            gather_strided(storage, offset, layout.dims(), layout.stride()).with_context(|| {
                format!(
                    "{}: tensor `{name}` ({:?}, strides {:?})",
                    path.display(),
                    layout.dims(),
                    layout.stride()
                )
            })?;
        let t = Tensor::from_vec(values, layout.dims().to_vec(), &Device::Cpu)?;
        stored_dtypes.insert(name.clone(), *dtype);
        tensors.insert(name, t);
    }
    Ok(Checkpoint {
        path: path.to_owned(),
        container: Container::TorchZip,
        wrapper,
        tensors,
        stored_dtypes,
        skipped,
    })
}

fn gather_strided(
    storage: &[f32],
    offset: usize,
    dims: &[usize],
    strides: &[usize],
) -> Result<Vec<f32>> {
    let n: usize = dims.iter().product();
    if n == 0 {
        return Ok(vec![]);
    }
    let max_index = offset
        + dims
            .iter()
            .zip(strides)
            .map(|(d, s)| (d - 1) * s)
            .sum::<usize>();
    if max_index >= storage.len() {
        bail!(
            "view reaches element {max_index} of a storage of {} elements",
            storage.len()
        );
    }
    let contiguous = {
        let mut expect = 1;
        let mut ok = true;
        for (d, s) in dims.iter().zip(strides).rev() {
            if *d != 1 && *s != expect {
                ok = false;
            }
            expect *= d;
        }
        ok
    };
    if contiguous {
        return Ok(storage[offset..offset + n].to_vec());
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..n {
        let pos = offset + idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        out.push(storage[pos]);
        for ax in (0..dims.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < dims[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    Ok(out)
}

fn key_string(k: &Object) -> String {
    match k {
        Object::Unicode(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn as_dict(o: Object) -> Option<Vec<(Object, Object)>> {
    match o {
        Object::Dict(d) => Some(d),
        // OrderedDict that the pickle reader kept as a reduce call with a dict argument, or a
        // Build whose state is the dict.
        Object::Reduce { args, .. } => match *args {
            Object::Dict(d) => Some(d),
            Object::Tuple(mut t) if t.len() == 1 => as_dict(t.remove(0)),
            _ => None,
        },
        Object::Build { args, .. } => as_dict(*args),
        _ => None,
    }
}

fn is_tensor(o: &Object) -> bool {
    match o {
        Object::Reduce { callable, .. } => matches!(
            callable.as_ref(),
            Object::Class { module_name, class_name }
                if (module_name == "torch._utils" && (class_name == "_rebuild_tensor_v2" || class_name == "_rebuild_parameter"))
                    || (module_name == "torch._tensor" && class_name == "_rebuild_from_type_v2")
        ),
        _ => false,
    }
}

/// Writes tensors to a safetensors file atomically (temporary file, then rename).
pub fn save_safetensors(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.partial");
    let map: HashMap<&String, Tensor> = tensors.iter().map(|(k, v)| (k, v.clone())).collect();
    candle::safetensors::save(&map, &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// Strict loading

#[derive(Debug, Default)]
struct StrictState {
    tensors: HashMap<String, Tensor>,
    used: BTreeSet<String>,
    missing: BTreeMap<String, Vec<usize>>,
    wrong_shape: BTreeMap<String, (Vec<usize>, Vec<usize>)>,
}

/// A `VarBuilder` backend over a name → tensor map that never fails while a model is built:
/// it records each missing or wrong-shaped request (handing out zeros) so that
/// [`StrictLoader::finish`] can report every problem, and the tensors nobody asked for, at once.
#[derive(Debug, Clone, Default)]
pub struct StrictLoader {
    state: Arc<Mutex<StrictState>>,
    source: String,
}

/// What a successful strict load set aside.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Tensors deliberately dropped (for instance classifier tensors loaded into a dense model).
    pub dropped: Vec<String>,
}

impl StrictLoader {
    /// A loader over `tensors`; `source` names the file in error messages.
    pub fn new(
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        source: impl Into<String>,
    ) -> Self {
        let state = StrictState {
            tensors: tensors.into_iter().collect(),
            ..Default::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            source: source.into(),
        }
    }

    /// A `VarBuilder` reading from this loader (f32, on `device`).
    pub fn var_builder(&self, device: &Device) -> candle_nn::VarBuilder<'static> {
        candle_nn::VarBuilder::from_backend(Box::new(self.clone()), DType::F32, device.clone())
    }

    /// Removes the tensors whose names satisfy `pred` and returns their names (sorted).
    pub fn drop_where(&self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let mut st = self.state.lock().expect("strict loader lock");
        let mut names: Vec<String> = st.tensors.keys().filter(|k| pred(k)).cloned().collect();
        names.sort();
        for n in &names {
            st.tensors.remove(n);
        }
        names
    }

    /// Fails with one message listing every missing, unexpected and wrong-shaped tensor.
    pub fn finish(&self) -> Result<()> {
        let st = self.state.lock().expect("strict loader lock");
        let mut unexpected: Vec<(&String, &Tensor)> = st
            .tensors
            .iter()
            .filter(|(k, _)| !st.used.contains(*k))
            .collect();
        unexpected.sort_by(|a, b| a.0.cmp(b.0));
        if st.missing.is_empty() && st.wrong_shape.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        let mut msg = format!("{}: the checkpoint does not match the model", self.source);
        if !st.missing.is_empty() {
            msg += &format!("\n  missing ({}):", st.missing.len());
            for (k, s) in &st.missing {
                msg += &format!("\n    {k} {s:?}");
            }
        }
        if !st.wrong_shape.is_empty() {
            msg += &format!("\n  wrong shape ({}):", st.wrong_shape.len());
            for (k, (want, got)) in &st.wrong_shape {
                msg += &format!("\n    {k}: model expects {want:?}, checkpoint has {got:?}");
            }
        }
        if !unexpected.is_empty() {
            msg += &format!("\n  unexpected ({}):", unexpected.len());
            for (k, t) in unexpected {
                msg += &format!("\n    {k} {:?}", t.dims());
            }
        }
        bail!(msg)
    }
}

impl candle_nn::var_builder::SimpleBackend for StrictLoader {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle::Result<Tensor> {
        let mut st = self.state.lock().expect("strict loader lock");
        match st.tensors.get(name).cloned() {
            Some(t) => {
                st.used.insert(name.to_string());
                if t.dims() != s.dims() {
                    st.wrong_shape
                        .insert(name.to_string(), (s.dims().to_vec(), t.dims().to_vec()));
                    return Tensor::zeros(s, dtype, dev);
                }
                t.to_dtype(dtype)?.to_device(dev)
            }
            None => {
                st.missing.insert(name.to_string(), s.dims().to_vec());
                Tensor::zeros(s, dtype, dev)
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle::Result<Tensor> {
        let mut st = self.state.lock().expect("strict loader lock");
        match st.tensors.get(name).cloned() {
            Some(t) => {
                st.used.insert(name.to_string());
                t.to_dtype(dtype)?.to_device(dev)
            }
            None => Err(candle::Error::Msg(format!(
                "{}: missing tensor {name}",
                self.source
            ))),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.state
            .lock()
            .expect("strict loader lock")
            .tensors
            .contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_gather_transposed_view() {
        // storage of a 2x3 row-major matrix, viewed transposed (3x2, strides [1, 3]).
        let storage: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let out = gather_strided(&storage, 0, &[3, 2], &[1, 3]).unwrap();
        assert_eq!(out, vec![0., 3., 1., 4., 2., 5.]);
        let out = gather_strided(&storage, 2, &[2], &[1]).unwrap();
        assert_eq!(out, vec![2., 3.]);
        assert!(gather_strided(&storage, 4, &[3], &[1]).is_err());
    }

    #[test]
    fn strict_loader_reports_everything() {
        let t = |d: &[usize]| Tensor::zeros(d, DType::F32, &Device::Cpu).unwrap();
        let l = StrictLoader::new(
            vec![
                ("a".to_string(), t(&[2])),
                ("b".to_string(), t(&[3])),
                ("c".to_string(), t(&[1])),
            ],
            "test.pth",
        );
        let vb = l.var_builder(&Device::Cpu);
        vb.get(2, "a").unwrap();
        vb.get(4, "b").unwrap();
        vb.get(5, "d").unwrap();
        let err = l.finish().unwrap_err().to_string();
        assert!(err.contains("missing (1):\n    d [5]"), "{err}");
        assert!(
            err.contains("b: model expects [4], checkpoint has [3]"),
            "{err}"
        );
        assert!(err.contains("unexpected (1):\n    c [1]"), "{err}");
        assert!(err.starts_with("test.pth"), "{err}");
    }
}
