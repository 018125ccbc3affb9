//! PVT v1 hyper-parameters: one typed row per stage, named variants as data.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

/// Hyper-parameters of one stage (PVT paper Table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageConfig {
    /// Patch size of the stage's patch embedding (kernel = stride of its conv).
    pub patch_size: usize,
    /// Channels `C_i`.
    pub embed_dim: usize,
    /// Attention heads `N_i` (head dim `C_i / N_i`).
    pub num_heads: usize,
    /// MLP hidden size is `mlp_ratio · C_i`.
    pub mlp_ratio: usize,
    /// Spatial-reduction ratio `R_i` of the keys/values (1 = none).
    pub sr_ratio: usize,
    /// Number of transformer blocks.
    pub depth: usize,
}

/// LayerNorm epsilons. The sources disagree: the official PVT code uses PyTorch's
/// default 1e-5 in the patch-embedding and spatial-reduction norms and 1e-6 in the blocks;
/// mmdetection's reimplementation uses 1e-6 everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormEps {
    /// whai362/PVT: 1e-5 in patch-embed and SR norms, 1e-6 in block and final norms.
    Official,
    /// mmdetection `PyramidVisionTransformer`: 1e-6 everywhere.
    Mmdet,
}

impl NormEps {
    /// Epsilon of the patch-embedding LayerNorm.
    pub fn patch_embed(self) -> f64 {
        match self {
            NormEps::Official => 1e-5,
            NormEps::Mmdet => 1e-6,
        }
    }
    /// Epsilon of the spatial-reduction LayerNorm inside attention.
    pub fn spatial_reduction(self) -> f64 {
        self.patch_embed()
    }
    /// Epsilon of the block norms (`norm1`, `norm2`) and the classifier's final norm.
    pub fn block(self) -> f64 {
        1e-6
    }
}

/// How position-embedding tables are fitted to a token grid other than the pre-training one.
/// Both resize bilinearly with `align_corners=False`; they differ in one corner case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosEmbedResize {
    /// The official detection/segmentation code: a stage's table is used unresized whenever
    /// the grid has as many cells as the *stage-1* table (56·56 = 3136 at 224 pre-training),
    /// even if the grid's shape differs (e.g. 64×49 at stage 1 reads the 56×56 table in raster
    /// order). Later stages hitting that count fail as the Python code does.
    OfficialShortcut,
    /// mmdetection: always interpolate to the grid (identity when the sizes agree).
    AlwaysInterpolate,
}

/// Numerical conventions that differ between the checkpoints' origins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Numerics {
    /// LayerNorm epsilons.
    pub norm_eps: NormEps,
    /// Position-embedding resizing rule.
    pub pos_embed_resize: PosEmbedResize,
}

impl Numerics {
    /// The official PVT code's conventions.
    pub const OFFICIAL: Numerics = Numerics {
        norm_eps: NormEps::Official,
        pos_embed_resize: PosEmbedResize::OfficialShortcut,
    };
    /// mmdetection's conventions.
    pub const MMDET: Numerics = Numerics {
        norm_eps: NormEps::Mmdet,
        pos_embed_resize: PosEmbedResize::AlwaysInterpolate,
    };
}

/// A PVT v1 model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PvtConfig {
    /// The four stages, fine to coarse.
    pub stages: [StageConfig; 4],
    /// Input channels (3).
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    /// Image size the position tables were built for (224): stage `i` has a
    /// `(224 / stride_i)²` grid.
    #[serde(default = "default_img_size")]
    pub pretrain_img_size: usize,
    /// Classifier outputs (1000 for ImageNet).
    #[serde(default = "default_num_classes")]
    pub num_classes: usize,
    /// Whether the q and kv projections have biases (true in every published model).
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    /// Numerical conventions; `None` means "follow the checkpoint's origin" when loading,
    /// and the official conventions otherwise.
    #[serde(default)]
    pub numerics: Option<Numerics>,
}

fn default_in_channels() -> usize {
    3
}
fn default_img_size() -> usize {
    224
}
fn default_num_classes() -> usize {
    1000
}
fn default_true() -> bool {
    true
}

/// The published PVT v1 sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvtV1 {
    /// PVT-Tiny: depths 2/2/2/2, 13.2 M parameters with the ImageNet head.
    Tiny,
    /// PVT-Small: depths 3/4/6/3, 24.5 M.
    Small,
    /// PVT-Medium: depths 3/4/18/3, 44.2 M.
    Medium,
    /// PVT-Large: depths 3/8/27/3, 61.4 M.
    Large,
}

impl PvtV1 {
    /// All variants.
    pub const ALL: [PvtV1; 4] = [PvtV1::Tiny, PvtV1::Small, PvtV1::Medium, PvtV1::Large];

    /// The architecture name used by the official code and the CLI (`pvt_tiny` ...).
    pub fn name(self) -> &'static str {
        match self {
            PvtV1::Tiny => "pvt_tiny",
            PvtV1::Small => "pvt_small",
            PvtV1::Medium => "pvt_medium",
            PvtV1::Large => "pvt_large",
        }
    }

    /// Parses `pvt_tiny`, `pvt-t`, `tiny` and similar spellings.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase().replace('-', "_");
        let n = n
            .strip_prefix("pvt_v1_")
            .or_else(|| n.strip_prefix("pvt_"))
            .unwrap_or(&n);
        Some(match n {
            "tiny" | "t" => PvtV1::Tiny,
            "small" | "s" => PvtV1::Small,
            "medium" | "m" => PvtV1::Medium,
            "large" | "l" => PvtV1::Large,
            _ => return None,
        })
    }

    /// Blocks per stage.
    pub fn depths(self) -> [usize; 4] {
        match self {
            PvtV1::Tiny => [2, 2, 2, 2],
            PvtV1::Small => [3, 4, 6, 3],
            PvtV1::Medium => [3, 4, 18, 3],
            PvtV1::Large => [3, 8, 27, 3],
        }
    }

    /// The full configuration (official PVT `pvt_tiny` ... constructors).
    pub fn config(self) -> PvtConfig {
        let d = self.depths();
        let stage = |patch_size, embed_dim, num_heads, mlp_ratio, sr_ratio, depth| StageConfig {
            patch_size,
            embed_dim,
            num_heads,
            mlp_ratio,
            sr_ratio,
            depth,
        };
        PvtConfig {
            stages: [
                stage(4, 64, 1, 8, 8, d[0]),
                stage(2, 128, 2, 8, 4, d[1]),
                stage(2, 320, 5, 4, 2, d[2]),
                stage(2, 512, 8, 4, 1, d[3]),
            ],
            in_channels: 3,
            pretrain_img_size: 224,
            num_classes: 1000,
            qkv_bias: true,
            numerics: None,
        }
    }
}

impl PvtConfig {
    /// Checks the invariants the model relies on.
    pub fn validate(&self) -> Result<()> {
        let mut stride = 1;
        for (i, s) in self.stages.iter().enumerate() {
            ensure!(
                s.patch_size >= 1 && s.embed_dim >= 1 && s.depth >= 1,
                "stage {}: sizes must be positive",
                i + 1
            );
            ensure!(
                s.num_heads >= 1 && s.embed_dim % s.num_heads == 0,
                "stage {}: {} channels do not split into {} heads",
                i + 1,
                s.embed_dim,
                s.num_heads
            );
            ensure!(
                s.sr_ratio >= 1 && s.mlp_ratio >= 1,
                "stage {}: ratios must be >= 1",
                i + 1
            );
            stride *= s.patch_size;
            ensure!(
                self.pretrain_img_size % stride == 0,
                "stage {}: pretrain_img_size {} is not a multiple of the stride {stride}",
                i + 1,
                self.pretrain_img_size
            );
        }
        ensure!(self.in_channels >= 1, "in_channels must be positive");
        Ok(())
    }

    /// Cumulative stride of each stage's output (4, 8, 16, 32 for every published model).
    pub fn strides(&self) -> [usize; 4] {
        let mut out = [1; 4];
        let mut s = 1;
        for (i, st) in self.stages.iter().enumerate() {
            s *= st.patch_size;
            out[i] = s;
        }
        out
    }

    /// Side of stage `i`'s position table grid (56, 28, 14, 7 at 224).
    pub fn pos_grid(&self, i: usize) -> usize {
        self.pretrain_img_size / self.strides()[i]
    }

    /// The numerics in force (`numerics`, or the official conventions).
    pub fn numerics_or_official(&self) -> Numerics {
        self.numerics.unwrap_or(Numerics::OFFICIAL)
    }

    /// Parameter count of the classifier form (with cls token, final norm and head).
    pub fn num_params_classifier(&self) -> usize {
        let last = self.stages[3].embed_dim;
        self.num_params_dense() + last /* pos row 0 */ + last /* cls */ + 2 * last + self.num_classes * (last + 1)
    }

    /// Parameter count of the dense backbone (official layout minus cls token, final norm,
    /// head and the unused cls position row).
    pub fn num_params_dense(&self) -> usize {
        let mut n = 0;
        let mut cin = self.in_channels;
        for (i, s) in self.stages.iter().enumerate() {
            let c = s.embed_dim;
            let g = self.pos_grid(i);
            n += g * g * c; // pos table (spatial rows)
            n += c * cin * s.patch_size * s.patch_size + c + 2 * c; // patch conv + norm
            let hidden = c * s.mlp_ratio;
            let bias = if self.qkv_bias { 1 } else { 0 };
            let mut blk = 2 * 2 * c; // norm1, norm2
            blk += c * c + bias * c + 2 * c * c + bias * 2 * c + c * c + c; // q, kv, proj
            if s.sr_ratio > 1 {
                blk += c * c * s.sr_ratio * s.sr_ratio + c + 2 * c;
            }
            blk += hidden * c + hidden + c * hidden + c;
            n += s.depth * blk;
            cin = c;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_parameter_counts() {
        // Totals from the official classification checkpoints' shapes.
        let want = [13_229_288, 24_485_864, 44_208_104, 61_369_320];
        for (v, w) in PvtV1::ALL.iter().zip(want) {
            let cfg = v.config();
            cfg.validate().unwrap();
            assert_eq!(cfg.num_params_classifier(), w, "{}", v.name());
            assert_eq!(cfg.strides(), [4, 8, 16, 32]);
            assert_eq!(
                (0..4).map(|i| cfg.pos_grid(i)).collect::<Vec<_>>(),
                vec![56, 28, 14, 7]
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for v in PvtV1::ALL {
            assert_eq!(PvtV1::from_name(v.name()), Some(v));
        }
        assert_eq!(PvtV1::from_name("PVT-T"), Some(PvtV1::Tiny));
        assert_eq!(PvtV1::from_name("pvt_huge"), None);
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let mut cfg = PvtV1::Tiny.config();
        cfg.stages[2].num_heads = 3;
        assert!(cfg.validate().unwrap_err().to_string().contains("stage 3"));
    }
}
