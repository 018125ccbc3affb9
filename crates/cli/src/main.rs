//! `pvt`: the command-line front end of the workspace.
//!
//! Subcommands (see `Cmd` below): `demo`; backbones: `classify`, `features`, `info`, `convert`,
//! `bench`; detectors: `detect`, `infer`, `merge-results`, `bench-detect`; segmenters:
//! `segment`, `infer-seg`, `bench-segment`; evaluation: `eval coco`, `eval ade20k`; training:
//! `synth`, `train`, `bench-train`. Every command parses its arguments, calls the library
//! crates and prints; none decides anything about models, checkpoints or metrics.

mod backbone_cmd;
mod bench_train_cmd;
mod bench_util;
mod demo_cmd;
mod detect_cmd;
mod eval_cmd;
mod model_args;
mod segment_cmd;
mod synth_cmd;
mod train_cmd;

use clap::{Parser, Subcommand};

// Large tensors are allocated and freed at every layer; glibc's malloc hands them back to the
// kernel each time, and the page faults of re-mapping them cost about a quarter of a forward
// pass (measured with perf). mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "pvt",
    version,
    about = "Pyramid Vision Transformer models: classification, dense features, checkpoints, evaluation"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The bundled models trained on synthetic shapes, on a bundled held-out picture:
    /// detections drawn (or, with --segment, the colour map).
    Demo(demo_cmd::DemoArgs),
    /// Top-k ImageNet classes of an image (DeiT evaluation preprocessing).
    Classify(backbone_cmd::ClassifyArgs),
    /// Run the dense backbone on an image and write the four feature maps to safetensors.
    Features(backbone_cmd::FeaturesArgs),
    /// Describe a checkpoint: container, naming, architecture, tensors, dtypes.
    Info(backbone_cmd::InfoArgs),
    /// Rewrite a checkpoint as safetensors, optionally renaming to another naming scheme.
    Convert(backbone_cmd::ConvertArgs),
    /// Time the dense backbone on random weights (see BENCHMARKS.md).
    Bench(backbone_cmd::BenchArgs),
    /// Detect objects in one image (RetinaNet-PVT): print, write JSON, draw.
    Detect(detect_cmd::DetectArgs),
    /// Run a detector over a whole COCO-format split (resumable, shardable, --eval).
    Infer(detect_cmd::InferArgs),
    /// Time detectors end to end on an image (random weights; see BENCHMARKS.md).
    BenchDetect(detect_cmd::BenchDetectArgs),
    /// Merge results files (e.g. shards of one split) into one.
    MergeResults(detect_cmd::MergeArgs),
    /// Semantic segmentation of one image (Semantic FPN-PVT): label PNG and colour overlay.
    Segment(segment_cmd::SegmentArgs),
    /// Segment a folder of images (resumable), optionally scoring mIoU against --gt-dir.
    InferSeg(segment_cmd::InferSegArgs),
    /// Time segmenters end to end on synthetic images (random weights; see BENCHMARKS.md).
    BenchSegment(segment_cmd::BenchSegmentArgs),
    /// Time training steps of a training config on a fixed random batch (see BENCHMARKS.md).
    BenchTrain(bench_train_cmd::BenchTrainArgs),
    /// Evaluate results: COCO AP (bbox, segm) or ADE20K mIoU.
    #[command(subcommand)]
    Eval(eval_cmd::EvalCmd),
    /// Write the deterministic synthetic shapes dataset (COCO instances, ADE-style labels).
    Synth(synth_cmd::SynthArgs),
    /// Train or fine-tune RetinaNet-PVT (COCO-format data) or Semantic FPN-PVT (ADE20K-style
    /// folders), resumable (see pvt-train).
    Train(train_cmd::TrainArgs),
}

/// mimalloc's `mi_option_purge_delay` (mimalloc.h, v2): milliseconds before freed memory is
/// returned to the kernel.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Freed activation buffers are reused a few milliseconds later by the next layer or image;
    // returning them to the kernel after mimalloc's default 10 ms made RetinaNet-PVT-Tiny spend
    // a quarter of its time re-faulting pages (2.7 s -> 1.8 s per image with 10 s, +34 MiB peak).
    // SAFETY: sets a global option before any thread is started; mimalloc reads it lazily.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000) };
    // candle runs its element-wise ops on a spin-waiting barrier pool of its own, beside rayon's
    // pool that runs the matmuls, softmax, LayerNorm and GELU. When the cores are busy the
    // spinning threads starve the others: PVT-Small at 224x224 went from ~105 ms to ~270 ms with
    // one other busy process on 2 cores (BENCHMARKS.md). Element-wise ops are a small share of
    // the work, so they run on the calling thread unless the user sets CANDLE_NUM_THREADS.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Demo(a) => demo_cmd::demo(a),
        Cmd::Classify(a) => backbone_cmd::classify(a),
        Cmd::Features(a) => backbone_cmd::features(a),
        Cmd::Info(a) => backbone_cmd::info(a),
        Cmd::Convert(a) => backbone_cmd::convert(a),
        Cmd::Bench(a) => backbone_cmd::bench(a),
        Cmd::Detect(a) => detect_cmd::detect(a),
        Cmd::Infer(a) => detect_cmd::infer(a),
        Cmd::MergeResults(a) => detect_cmd::merge(a),
        Cmd::BenchDetect(a) => detect_cmd::bench_detect(a),
        Cmd::Segment(a) => segment_cmd::segment(a),
        Cmd::InferSeg(a) => segment_cmd::infer_seg(a),
        Cmd::BenchSegment(a) => segment_cmd::bench_segment(a),
        Cmd::BenchTrain(a) => bench_train_cmd::bench_train(a),
        Cmd::Eval(c) => eval_cmd::run(c),
        Cmd::Synth(a) => synth_cmd::synth(a),
        Cmd::Train(a) => train_cmd::run(a),
    };
    if let Err(e) = res {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
