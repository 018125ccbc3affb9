//! Parameters: deterministic initialisation, frozen stages, backbone initialisation from a
//! checkpoint file.

mod common;

use candle::Device;
use pvt_train::params::Params;

#[test]
fn init_is_a_function_of_the_seed() {
    let cfg = common::mini_config().model;
    let dev = Device::Cpu;
    let a = Params::retinanet(&cfg, 1, &dev)
        .unwrap()
        .snapshot()
        .unwrap();
    let b = Params::retinanet(&cfg, 1, &dev)
        .unwrap()
        .snapshot()
        .unwrap();
    let c = Params::retinanet(&cfg, 2, &dev)
        .unwrap()
        .snapshot()
        .unwrap();
    let flat = |t: &candle::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = "bbox_head.cls_convs.0.conv.weight";
    assert_eq!(flat(&a[w]), flat(&b[w]));
    assert_ne!(flat(&a[w]), flat(&c[w]));
    // official names, as `pvt detect` loads them
    assert!(a.contains_key("backbone.pos_embed4"));
    assert!(a.contains_key("neck.fpn_convs.4.conv.weight"));
    assert!(a.contains_key("bbox_head.retina_reg.bias"));
}

#[test]
fn frozen_stages_are_left_out_of_training() {
    let cfg = common::mini_config().model;
    let mut p = Params::retinanet(&cfg, 0, &Device::Cpu).unwrap();
    p.freeze_stages(2);
    assert!(p.frozen().contains("backbone.patch_embed1.proj.weight"));
    assert!(p.frozen().contains("backbone.pos_embed2"));
    assert!(p.frozen().contains("backbone.block2.0.mlp.fc1.weight"));
    assert!(!p
        .frozen()
        .iter()
        .any(|k| k.contains("block3") || !k.starts_with("backbone.")));
    assert!(p.trainable().all(|(k, _)| !p.frozen().contains(k)));
    let (all, trained) = p.counts();
    assert!(trained < all);
    // frozen tensors reach the network as constants
    let vb = p.var_builder();
    let t = vb
        .get((16, 3, 4, 4), "backbone.patch_embed1.proj.weight")
        .unwrap();
    assert!(!t.is_variable());
    let t = vb.get(32, "neck.lateral_convs.0.conv.bias").unwrap();
    assert!(t.is_variable());
}

#[test]
fn backbone_initialises_from_a_checkpoint() {
    let cfg = common::mini_config().model;
    let dev = Device::Cpu;
    let src = Params::retinanet(&cfg, 7, &dev)
        .unwrap()
        .snapshot()
        .unwrap();
    // a bare backbone file in official names, as an ImageNet checkpoint has them (plus the
    // classifier's tensors, which are skipped)
    let mut bb: std::collections::BTreeMap<String, candle::Tensor> = src
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("backbone.")
                .map(|n| (n.to_string(), v.clone()))
        })
        .collect();
    let c4 = bb["pos_embed4"].dim(2).unwrap();
    bb.insert(
        "head.weight".into(),
        candle::Tensor::zeros((1000, c4), candle::DType::F32, &dev).unwrap(),
    );
    bb.insert(
        "head.bias".into(),
        candle::Tensor::zeros(1000, candle::DType::F32, &dev).unwrap(),
    );
    let dir = std::env::temp_dir().join(format!("pvt-train-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("backbone.safetensors");
    pvt_nn::checkpoint::save_safetensors(&bb, &path).unwrap();
    let mut p = Params::retinanet(&cfg, 8, &dev).unwrap();
    let msg = p.init_backbone(&cfg.backbone, &path).unwrap();
    assert!(msg.contains("backbone initialised"), "{msg}");
    let got = p.snapshot().unwrap();
    let flat = |t: &candle::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (k, v) in &src {
        if k.starts_with("backbone.") {
            assert_eq!(flat(&got[k]), flat(v), "{k}");
        } else if k.ends_with(".weight") {
            assert_ne!(flat(&got[k]), flat(v), "{k} should keep its own init");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn load_from_takes_every_tensor_of_matching_name_and_shape() {
    let dev = Device::Cpu;
    let six = common::mini_config().model;
    let src = Params::retinanet(&six, 1, &dev)
        .unwrap()
        .snapshot()
        .unwrap();
    let path =
        std::env::temp_dir().join(format!("pvt-load-from-{}.safetensors", std::process::id()));
    pvt_nn::checkpoint::save_safetensors(&src, &path).unwrap();
    // the same detector for 3 classes: everything but the classifier comes from the file
    let mut three = six.clone();
    three.num_classes = 3;
    let mut p = Params::retinanet(&three, 2, &dev).unwrap();
    let before = p.snapshot().unwrap();
    let msg = p.load_matching(&path).unwrap();
    let after = p.snapshot().unwrap();
    let flat = |t: &candle::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let n = after.len();
    assert!(
        msg.contains(&format!("loaded {} of {n}", n - 2)) && msg.contains("retina_cls.weight"),
        "{msg}"
    );
    for (k, v) in &after {
        if k.starts_with("bbox_head.retina_cls.") {
            assert_eq!(flat(v), flat(&before[k]), "{k} must keep its own values");
        } else {
            assert_eq!(flat(v), flat(&src[k]), "{k} must come from the file");
        }
    }
    // a file that fills nothing is an error
    let other = std::env::temp_dir().join(format!(
        "pvt-load-from-x-{}.safetensors",
        std::process::id()
    ));
    let mut junk = std::collections::BTreeMap::new();
    junk.insert(
        "nothing".to_string(),
        candle::Tensor::zeros(3, candle::DType::F32, &dev).unwrap(),
    );
    pvt_nn::checkpoint::save_safetensors(&junk, &other).unwrap();
    assert!(p.load_matching(&other).is_err());
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&other);
}
