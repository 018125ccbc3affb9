//! Class indices and the map between them and a dataset's category ids.
//!
//! Models predict contiguous class indices `0..K` ([`ClassIdx`]); datasets name categories by
//! their own ids (COCO uses 1..90 with gaps for its 80 classes). [`CategoryMap`] is the only
//! place where one is turned into the other.

use serde::{Deserialize, Serialize};

/// A contiguous class index `0..K`, as a classifier head predicts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClassIdx(pub u32);

impl std::fmt::Display for ClassIdx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "class #{}", self.0)
    }
}

/// Why a [`CategoryMap`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CategoryMapError {
    /// The same dataset id appears at two indices.
    DuplicateId {
        /// The repeated id.
        id: u64,
    },
    /// `names` and `ids` have different lengths.
    NameCount {
        /// Number of ids.
        ids: usize,
        /// Number of names.
        names: usize,
    },
}

impl std::fmt::Display for CategoryMapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DuplicateId { id } => write!(f, "category id {id} appears twice"),
            Self::NameCount { ids, names } => {
                write!(f, "{ids} category ids but {names} names")
            }
        }
    }
}

impl std::error::Error for CategoryMapError {}

/// Contiguous class index `i` <-> dataset category id `ids[i]`, with a name for each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryMap {
    ids: Vec<u64>,
    names: Vec<String>,
}

/// The 80 COCO detection classes: (dataset id, name), in contiguous-index order.
///
/// Source: the `categories` list of COCO 2017 `instances_val2017.json`, which mmdetection and
/// detectron2 enumerate in this order.
pub const COCO80: [(u64, &str); 80] = [
    (1, "person"),
    (2, "bicycle"),
    (3, "car"),
    (4, "motorcycle"),
    (5, "airplane"),
    (6, "bus"),
    (7, "train"),
    (8, "truck"),
    (9, "boat"),
    (10, "traffic light"),
    (11, "fire hydrant"),
    (13, "stop sign"),
    (14, "parking meter"),
    (15, "bench"),
    (16, "bird"),
    (17, "cat"),
    (18, "dog"),
    (19, "horse"),
    (20, "sheep"),
    (21, "cow"),
    (22, "elephant"),
    (23, "bear"),
    (24, "zebra"),
    (25, "giraffe"),
    (27, "backpack"),
    (28, "umbrella"),
    (31, "handbag"),
    (32, "tie"),
    (33, "suitcase"),
    (34, "frisbee"),
    (35, "skis"),
    (36, "snowboard"),
    (37, "sports ball"),
    (38, "kite"),
    (39, "baseball bat"),
    (40, "baseball glove"),
    (41, "skateboard"),
    (42, "surfboard"),
    (43, "tennis racket"),
    (44, "bottle"),
    (46, "wine glass"),
    (47, "cup"),
    (48, "fork"),
    (49, "knife"),
    (50, "spoon"),
    (51, "bowl"),
    (52, "banana"),
    (53, "apple"),
    (54, "sandwich"),
    (55, "orange"),
    (56, "broccoli"),
    (57, "carrot"),
    (58, "hot dog"),
    (59, "pizza"),
    (60, "donut"),
    (61, "cake"),
    (62, "chair"),
    (63, "couch"),
    (64, "potted plant"),
    (65, "bed"),
    (67, "dining table"),
    (70, "toilet"),
    (72, "tv"),
    (73, "laptop"),
    (74, "mouse"),
    (75, "remote"),
    (76, "keyboard"),
    (77, "cell phone"),
    (78, "microwave"),
    (79, "oven"),
    (80, "toaster"),
    (81, "sink"),
    (82, "refrigerator"),
    (84, "book"),
    (85, "clock"),
    (86, "vase"),
    (87, "scissors"),
    (88, "teddy bear"),
    (89, "hair drier"),
    (90, "toothbrush"),
];

impl CategoryMap {
    /// A map from ids in index order and one name per id.
    pub fn new(ids: Vec<u64>, names: Vec<String>) -> Result<Self, CategoryMapError> {
        if ids.len() != names.len() {
            return Err(CategoryMapError::NameCount {
                ids: ids.len(),
                names: names.len(),
            });
        }
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(CategoryMapError::DuplicateId { id: w[0] });
        }
        Ok(Self { ids, names })
    }

    /// The COCO 80-class map: index 0..80 <-> ids 1..90 ([`COCO80`]).
    pub fn coco80() -> Self {
        Self {
            ids: COCO80.iter().map(|&(id, _)| id).collect(),
            names: COCO80.iter().map(|&(_, n)| n.to_string()).collect(),
        }
    }

    /// Number of classes K.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the map has no class.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The dataset id of a class index, `None` if the index is out of range.
    pub fn id(&self, idx: ClassIdx) -> Option<u64> {
        self.ids.get(idx.0 as usize).copied()
    }

    /// The class index of a dataset id, `None` if the dataset has no such category.
    pub fn index(&self, id: u64) -> Option<ClassIdx> {
        self.ids
            .iter()
            .position(|&x| x == id)
            .map(|i| ClassIdx(i as u32))
    }

    /// The name of a class index.
    pub fn name(&self, idx: ClassIdx) -> Option<&str> {
        self.names.get(idx.0 as usize).map(String::as_str)
    }

    /// Dataset ids in index order.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Names in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coco80_maps_both_ways() {
        let m = CategoryMap::coco80();
        assert_eq!(m.len(), 80);
        assert_eq!(m.id(ClassIdx(0)), Some(1));
        assert_eq!(m.id(ClassIdx(11)), Some(13));
        assert_eq!(m.id(ClassIdx(79)), Some(90));
        assert_eq!(m.id(ClassIdx(80)), None);
        assert_eq!(m.index(12), None);
        for i in 0..80 {
            let id = m.id(ClassIdx(i)).expect("in range");
            assert_eq!(m.index(id), Some(ClassIdx(i)));
        }
        assert_eq!(m.name(ClassIdx(79)), Some("toothbrush"));
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let e = CategoryMap::new(vec![3, 5, 3], vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(e, Err(CategoryMapError::DuplicateId { id: 3 }));
    }
}
