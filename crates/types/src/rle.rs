//! Binary masks and their COCO run-length encoding.
//!
//! COCO's RLE (cocoapi `common/maskApi.c`) lists run lengths over the pixels in
//! **column-major** order (pixel `x * height + y`), starting with a run of background (which may
//! be 0). Its compressed form is an ASCII string: each count (after the first three, as the
//! difference to the count two places back) is written in 5-bit groups, least significant first,
//! as `48 + group`, with bit `0x20` set on every group but the last and the last group's bit
//! `0x10` giving the sign. [`Rle`] holds the runs and converts both ways; [`BitMask`] is a plain
//! row-major mask, as a model produces it.

use crate::ImageSize;
use serde::{Deserialize, Serialize};

/// Why a run-length encoding was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RleError {
    /// The runs do not add up to the number of pixels.
    CountSum {
        /// Sum of the runs.
        sum: u64,
        /// `height * width`.
        expected: u64,
    },
    /// A compressed string holds a byte outside `'0'..='o'`.
    BadChar {
        /// Byte offset in the string.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A compressed string decodes to a negative or oversized run, or ends inside a count.
    BadCount {
        /// Index of the run.
        index: usize,
    },
    /// A mask's data does not have `height * width` entries.
    DataLength {
        /// Entries given.
        got: usize,
        /// `height * width`.
        expected: usize,
    },
}

impl std::fmt::Display for RleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CountSum { sum, expected } => write!(
                f,
                "RLE runs add up to {sum} pixels, but the mask size has {expected}"
            ),
            Self::BadChar { offset, byte } => write!(
                f,
                "compressed RLE has byte {byte:#04x} at offset {offset}; only '0'..='o' occur"
            ),
            Self::BadCount { index } => write!(
                f,
                "compressed RLE run #{index} is negative, too large or cut off"
            ),
            Self::DataLength { got, expected } => {
                write!(f, "mask has {got} pixels, its size says {expected}")
            }
        }
    }
}

impl std::error::Error for RleError {}

/// A binary mask, row-major (`data[y * width + x]`), 0 or 1 per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitMask {
    size: ImageSize,
    data: Vec<u8>,
}

impl BitMask {
    /// A mask from row-major data; any non-zero byte counts as foreground.
    pub fn new(size: ImageSize, data: Vec<u8>) -> Result<Self, RleError> {
        if data.len() != size.area() {
            return Err(RleError::DataLength {
                got: data.len(),
                expected: size.area(),
            });
        }
        let data = data.into_iter().map(|v| u8::from(v != 0)).collect();
        Ok(Self { size, data })
    }

    /// The mask size.
    pub fn size(&self) -> ImageSize {
        self.size
    }

    /// Row-major 0/1 data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Number of foreground pixels.
    pub fn area(&self) -> u64 {
        self.data.iter().map(|&v| u64::from(v)).sum()
    }
}

/// A COCO run-length encoded mask (column-major runs, background first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rle {
    size: ImageSize,
    counts: Vec<u32>,
}

impl Rle {
    /// Runs for a mask of `size`; they must add up to `height * width`.
    pub fn new(size: ImageSize, counts: Vec<u32>) -> Result<Self, RleError> {
        let sum: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        let expected = size.area() as u64;
        if sum != expected {
            return Err(RleError::CountSum { sum, expected });
        }
        Ok(Self { size, counts })
    }

    /// Encode a row-major mask.
    pub fn encode(mask: &BitMask) -> Self {
        let (h, w) = (mask.size.height, mask.size.width);
        let mut counts = Vec::new();
        let (mut cur, mut run) = (0u8, 0u32);
        for x in 0..w {
            for y in 0..h {
                let v = mask.data[y * w + x];
                if v != cur {
                    counts.push(run);
                    cur = v;
                    run = 0;
                }
                run += 1;
            }
        }
        counts.push(run);
        Self {
            size: mask.size,
            counts,
        }
    }

    /// Decode into a row-major mask.
    pub fn decode(&self) -> BitMask {
        let (h, w) = (self.size.height, self.size.width);
        let mut data = vec![0u8; h * w];
        let mut pos = 0usize;
        for (i, &c) in self.counts.iter().enumerate() {
            let end = pos + c as usize;
            if i % 2 == 1 {
                for p in pos..end {
                    data[(p % h) * w + p / h] = 1;
                }
            }
            pos = end;
        }
        BitMask {
            size: self.size,
            data,
        }
    }

    /// The mask size.
    pub fn size(&self) -> ImageSize {
        self.size
    }

    /// The runs.
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    /// Number of foreground pixels.
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| u64::from(c))
            .sum()
    }

    /// The compressed string form (maskApi `rleToString`).
    pub fn to_compressed(&self) -> String {
        let mut s = String::with_capacity(self.counts.len() * 2);
        for i in 0..self.counts.len() {
            let mut x = i64::from(self.counts[i]);
            if i > 2 {
                x -= i64::from(self.counts[i - 2]);
            }
            loop {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push(char::from(c + 48));
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// Parse the compressed string form (maskApi `rleFrString`) for a mask of `size`.
    pub fn from_compressed(s: &str, size: ImageSize) -> Result<Self, RleError> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::with_capacity(bytes.len());
        let mut p = 0usize;
        while p < bytes.len() {
            let index = counts.len();
            let (mut x, mut k) = (0i64, 0u32);
            loop {
                let byte = *bytes.get(p).ok_or(RleError::BadCount { index })?;
                if !(48..=111).contains(&byte) {
                    return Err(RleError::BadChar { offset: p, byte });
                }
                if k > 12 {
                    return Err(RleError::BadCount { index });
                }
                let c = i64::from(byte - 48);
                x |= (c & 0x1f) << (5 * k);
                p += 1;
                k += 1;
                if c & 0x20 == 0 {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            if index > 2 {
                x += i64::from(counts[index - 2]);
            }
            let run = u32::try_from(x).map_err(|_| RleError::BadCount { index })?;
            counts.push(run);
        }
        Self::new(size, counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_column_major() {
        // 2x3 mask, row-major:
        // 0 1 1
        // 0 0 1
        let size = ImageSize::new(2, 3);
        let m = BitMask::new(size, vec![0, 1, 1, 0, 0, 1]).expect("valid");
        let r = Rle::encode(&m);
        // column-major pixels: (0,0)=0 (1,0)=0 | (0,1)=1 (1,1)=0 | (0,2)=1 (1,2)=1
        assert_eq!(r.counts(), &[2, 1, 1, 2]);
        assert_eq!(r.area(), 3);
        assert_eq!(r.decode(), m);
        let s = r.to_compressed();
        assert_eq!(Rle::from_compressed(&s, size).expect("valid"), r);
    }

    #[test]
    fn compressed_string_matches_maskapi() {
        // pycocotools: mask.encode of a 4x4 mask with a 2x2 block at rows 1..3, cols 1..3
        // gives counts b'52203' (runs 5,2,2,2,5).
        let r = Rle::new(ImageSize::new(4, 4), vec![5, 2, 2, 2, 5]).expect("valid");
        assert_eq!(r.to_compressed(), "52203");
        let back = Rle::from_compressed("52203", ImageSize::new(4, 4)).expect("valid");
        assert_eq!(back.counts(), &[5, 2, 2, 2, 5]);
    }

    #[test]
    fn large_and_negative_deltas_round_trip() {
        let size = ImageSize::new(1000, 1000);
        let counts = vec![0, 70_000, 3, 900_000, 1, 29_996];
        let r = Rle::new(size, counts).expect("valid");
        let back = Rle::from_compressed(&r.to_compressed(), size).expect("valid");
        assert_eq!(back, r);
    }

    #[test]
    fn bad_strings_are_errors_not_panics() {
        let size = ImageSize::new(4, 4);
        assert!(matches!(
            Rle::from_compressed("5 2", size),
            Err(RleError::BadChar { .. })
        ));
        assert!(matches!(
            Rle::from_compressed("5", size),
            Err(RleError::CountSum { .. })
        ));
        assert!(matches!(
            Rle::from_compressed("5o", size),
            Err(RleError::BadCount { .. })
        ));
        assert!(Rle::from_compressed("oooooooooooooooooooo0", size).is_err());
        assert!(matches!(
            Rle::new(size, vec![3, 4]),
            Err(RleError::CountSum {
                sum: 7,
                expected: 16
            })
        ));
    }
}
