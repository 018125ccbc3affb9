//! PVT v2 hyper-parameters (Wang et al., "PVT v2: Improved Baselines with Pyramid Vision
//! Transformer", arXiv 2106.13797): one typed row per stage, the published sizes b0–b5 and b2_li
//! as data (whai362/PVT `classification/pvt_v2.py` constructors, identical in timm `pvt_v2.py`).

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use crate::config::NormEps;

/// Hyper-parameters of one PVT v2 stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageV2Config {
    /// Kernel of the overlapping patch embedding (7 for stage 1, 3 after). Its padding is
    /// `patch_size / 2`, so the output grid is `ceil(H / stride)` for odd kernels.
    pub patch_size: usize,
    /// Stride of the patch embedding (4 for stage 1, 2 after).
    pub stride: usize,
    /// Channels `C_i`.
    pub embed_dim: usize,
    /// Attention heads `N_i` (head dim `C_i / N_i`).
    pub num_heads: usize,
    /// Hidden size of the convolutional FFN is `mlp_ratio · C_i`.
    pub mlp_ratio: usize,
    /// Spatial-reduction ratio `R_i` of keys/values for [`KvReduction::Conv`] (1 = none);
    /// ignored by [`KvReduction::LinearPool`].
    pub sr_ratio: usize,
    /// Number of transformer blocks.
    pub depth: usize,
}

/// How keys and values are reduced before attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvReduction {
    /// Spatial-reduction attention as in PVT v1: `Conv2d(k = s = R_i)` then LayerNorm when
    /// `R_i > 1`, full-resolution keys when `R_i = 1`.
    Conv,
    /// "Linear SRA" (b2_li, `linear=True`): `AdaptiveAvgPool2d(size)` → 1×1 conv (`attn.sr`) →
    /// LayerNorm → GELU in every stage; the SR ratios are ignored. The FFN also gets a ReLU after
    /// `fc1`.
    LinearPool {
        /// Side of the pooled key grid (7 in every published model).
        size: usize,
    },
}

/// A PVT v2 model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PvtV2Config {
    /// The four stages, fine to coarse.
    pub stages: [StageV2Config; 4],
    /// Key/value reduction of every block.
    pub kv_reduction: KvReduction,
    /// Input channels (3).
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    /// Classifier outputs (1000 for ImageNet).
    #[serde(default = "default_num_classes")]
    pub num_classes: usize,
    /// Whether the q and kv projections have biases (true in every published model).
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    /// LayerNorm epsilons; `None` means "follow the checkpoint's origin" when loading
    /// (mmdetection: 1e-6 everywhere; official and timm: 1e-5 in the patch-embedding and
    /// spatial-reduction norms) and the official convention otherwise.
    #[serde(default)]
    pub norm_eps: Option<NormEps>,
}

fn default_in_channels() -> usize {
    3
}
fn default_num_classes() -> usize {
    1000
}
fn default_true() -> bool {
    true
}

/// The published PVT v2 sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvtV2 {
    /// b0: dims 32/64/160/256, depths 2/2/2/2.
    B0,
    /// b1: dims 64/128/320/512, depths 2/2/2/2.
    B1,
    /// b2: depths 3/4/6/3.
    B2,
    /// b2_li: b2 with linear spatial-reduction attention.
    B2Li,
    /// b3: depths 3/4/18/3.
    B3,
    /// b4: depths 3/8/27/3.
    B4,
    /// b5: depths 3/6/40/3, MLP ratios 4/4/4/4.
    B5,
}

impl PvtV2 {
    /// All variants.
    pub const ALL: [PvtV2; 7] = [
        PvtV2::B0,
        PvtV2::B1,
        PvtV2::B2,
        PvtV2::B2Li,
        PvtV2::B3,
        PvtV2::B4,
        PvtV2::B5,
    ];

    /// The architecture name of the official code, timm and the CLI (`pvt_v2_b0` ...).
    pub fn name(self) -> &'static str {
        match self {
            PvtV2::B0 => "pvt_v2_b0",
            PvtV2::B1 => "pvt_v2_b1",
            PvtV2::B2 => "pvt_v2_b2",
            PvtV2::B2Li => "pvt_v2_b2_li",
            PvtV2::B3 => "pvt_v2_b3",
            PvtV2::B4 => "pvt_v2_b4",
            PvtV2::B5 => "pvt_v2_b5",
        }
    }

    /// Parses `pvt_v2_b2_li`, `pvt-v2-b2-li`, `b2_li` and similar spellings.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase().replace('-', "_");
        let n = n
            .strip_prefix("pvt_v2_")
            .or_else(|| n.strip_prefix("pvtv2_"))
            .unwrap_or(&n);
        Some(match n {
            "b0" => PvtV2::B0,
            "b1" => PvtV2::B1,
            "b2" => PvtV2::B2,
            "b2_li" | "b2li" => PvtV2::B2Li,
            "b3" => PvtV2::B3,
            "b4" => PvtV2::B4,
            "b5" => PvtV2::B5,
            _ => return None,
        })
    }

    /// Blocks per stage.
    pub fn depths(self) -> [usize; 4] {
        match self {
            PvtV2::B0 | PvtV2::B1 => [2, 2, 2, 2],
            PvtV2::B2 | PvtV2::B2Li => [3, 4, 6, 3],
            PvtV2::B3 => [3, 4, 18, 3],
            PvtV2::B4 => [3, 8, 27, 3],
            PvtV2::B5 => [3, 6, 40, 3],
        }
    }

    /// Channels per stage.
    pub fn embed_dims(self) -> [usize; 4] {
        match self {
            PvtV2::B0 => [32, 64, 160, 256],
            _ => [64, 128, 320, 512],
        }
    }

    /// MLP ratios per stage.
    pub fn mlp_ratios(self) -> [usize; 4] {
        match self {
            PvtV2::B5 => [4, 4, 4, 4],
            _ => [8, 8, 4, 4],
        }
    }

    /// The full configuration (official `pvt_v2_b0` ... constructors: heads 1/2/5/8, SR ratios
    /// 8/4/2/1, qkv bias, patch embeddings 7/4 then 3/2).
    pub fn config(self) -> PvtV2Config {
        let (d, c, r) = (self.depths(), self.embed_dims(), self.mlp_ratios());
        let heads = [1, 2, 5, 8];
        let sr = [8, 4, 2, 1];
        let stage = |i: usize| StageV2Config {
            patch_size: if i == 0 { 7 } else { 3 },
            stride: if i == 0 { 4 } else { 2 },
            embed_dim: c[i],
            num_heads: heads[i],
            mlp_ratio: r[i],
            sr_ratio: sr[i],
            depth: d[i],
        };
        PvtV2Config {
            stages: [stage(0), stage(1), stage(2), stage(3)],
            kv_reduction: if self == PvtV2::B2Li {
                KvReduction::LinearPool { size: 7 }
            } else {
                KvReduction::Conv
            },
            in_channels: 3,
            num_classes: 1000,
            qkv_bias: true,
            norm_eps: None,
        }
    }
}

impl PvtV2Config {
    /// Checks the invariants the model relies on.
    pub fn validate(&self) -> Result<()> {
        for (i, s) in self.stages.iter().enumerate() {
            let n = i + 1;
            ensure!(
                s.embed_dim >= 1 && s.depth >= 1 && s.mlp_ratio >= 1,
                "stage {n}: sizes must be positive"
            );
            ensure!(
                s.num_heads >= 1 && s.embed_dim % s.num_heads == 0,
                "stage {n}: {} channels do not split into {} heads",
                s.embed_dim,
                s.num_heads
            );
            ensure!(
                s.stride >= 1 && s.patch_size > s.stride && s.patch_size % 2 == 1,
                "stage {n}: the overlapping patch embedding needs an odd kernel larger than its stride \
                 (got kernel {} stride {})",
                s.patch_size,
                s.stride
            );
            ensure!(s.sr_ratio >= 1, "stage {n}: sr_ratio must be >= 1");
        }
        if let KvReduction::LinearPool { size } = self.kv_reduction {
            ensure!(size >= 1, "linear_pool size must be >= 1");
        }
        ensure!(self.in_channels >= 1, "in_channels must be positive");
        let strides = self.strides();
        ensure!(
            strides.iter().all(|s| s.is_power_of_two()),
            "cumulative strides {strides:?} must be powers of two"
        );
        Ok(())
    }

    /// Cumulative stride of each stage's output (4, 8, 16, 32 for every published model).
    pub fn strides(&self) -> [usize; 4] {
        let mut out = [1; 4];
        let mut s = 1;
        for (i, st) in self.stages.iter().enumerate() {
            s *= st.stride;
            out[i] = s;
        }
        out
    }

    /// Whether keys/values use linear SRA (b2_li).
    pub fn is_linear(&self) -> bool {
        matches!(self.kv_reduction, KvReduction::LinearPool { .. })
    }

    /// The LayerNorm epsilons in force (`norm_eps`, or the official convention).
    pub fn norm_eps_or_official(&self) -> NormEps {
        self.norm_eps.unwrap_or(NormEps::Official)
    }

    /// Parameter count of the dense backbone (everything but `head`), from the official key
    /// shapes.
    pub fn num_params_dense(&self) -> usize {
        let bias = usize::from(self.qkv_bias);
        let mut n = 0;
        let mut cin = self.in_channels;
        for s in &self.stages {
            let c = s.embed_dim;
            let h = c * s.mlp_ratio;
            n += c * cin * s.patch_size * s.patch_size + c + 2 * c; // patch_embed{i}.proj + norm
            let mut blk = 2 * c + 2 * c; // norm1, norm2
            blk += c * c + bias * c; // attn.q
            blk += 2 * c * c + bias * 2 * c; // attn.kv
            blk += c * c + c; // attn.proj
            blk += match self.kv_reduction {
                KvReduction::Conv if s.sr_ratio > 1 => {
                    c * c * s.sr_ratio * s.sr_ratio + c + 2 * c // attn.sr + attn.norm
                }
                KvReduction::Conv => 0,
                KvReduction::LinearPool { .. } => c * c + c + 2 * c, // 1x1 attn.sr + attn.norm
            };
            blk += h * c + h; // mlp.fc1
            blk += 9 * h + h; // mlp.dwconv.dwconv
            blk += c * h + c; // mlp.fc2
            n += s.depth * blk + 2 * c; // blocks + norm{i}
            cin = c;
        }
        n
    }

    /// Parameter count of the classifier form (dense backbone + `head`).
    pub fn num_params_classifier(&self) -> usize {
        let last = self.stages[3].embed_dim;
        self.num_params_dense() + self.num_classes * (last + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_parameter_counts() {
        // Exact totals of the classifiers' state dicts (timm 1.0.31 `pvt_v2_*` models, which
        // load the official checkpoints after a pure rename), in the order of `PvtV2::ALL`.
        let exact = [
            3_666_760, 14_009_000, 25_362_856, 22_553_512, 45_238_696, 62_556_072, 81_956_008,
        ];
        // Spec §3's recount in millions (README: 3.7/14.0/25.4/22.6/45.2/62.6/82.0).
        let spec = [3.67, 14.01, 25.36, 22.55, 45.24, 62.56, 81.96];
        for ((v, want), m) in PvtV2::ALL.iter().zip(exact).zip(spec) {
            let cfg = v.config();
            cfg.validate().unwrap();
            let n = cfg.num_params_classifier();
            assert_eq!(n, want, "{}", v.name());
            assert_eq!(
                format!("{:.2}", n as f64 / 1e6),
                format!("{m:.2}"),
                "{}",
                v.name()
            );
            assert_eq!(cfg.strides(), [4, 8, 16, 32]);
            assert_eq!(
                cfg.num_params_dense(),
                n - 1000 * (cfg.stages[3].embed_dim + 1)
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for v in PvtV2::ALL {
            assert_eq!(PvtV2::from_name(v.name()), Some(v));
        }
        assert_eq!(PvtV2::from_name("PVT-v2-B2-li"), Some(PvtV2::B2Li));
        assert_eq!(PvtV2::from_name("b5"), Some(PvtV2::B5));
        assert_eq!(PvtV2::from_name("pvt_tiny"), None);
        assert!(PvtV2::B2Li.config().is_linear());
        assert!(!PvtV2::B2.config().is_linear());
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let mut cfg = PvtV2::B0.config();
        cfg.stages[1].num_heads = 3;
        assert!(cfg.validate().unwrap_err().to_string().contains("stage 2"));
        let mut cfg = PvtV2::B0.config();
        cfg.stages[0].patch_size = 4;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("odd kernel"));
    }

    #[test]
    fn json_round_trip() {
        let cfg = PvtV2::B2Li.config();
        let text = serde_json::to_string(&cfg).unwrap();
        let back: PvtV2Config = serde_json::from_str(&text).unwrap();
        assert_eq!(back, cfg);
    }
}
