//! A deterministic text featurizer: feature-hashed TF-IDF over word and character n-grams.
//!
//! Text is lower-cased and split into words (Unicode word boundaries, UAX #29). The terms are
//! the word n-grams (words joined by one space) and the character n-grams of each word padded
//! with one space on each side (scikit-learn's `char_wb`). A term is hashed with XXH3-64
//! (seed 1 for word terms, 2 for character terms); the hash modulo the dimension is its
//! column and its top bit its sign (signed hashing keeps collisions from only adding up).
//! IDF is fitted on a corpus: `idf = ln((1 + n) / (1 + df)) + 1` per column, with `df` the
//! documents touching the column; a document's vector is its signed term counts times the IDF,
//! scaled to unit length (a document with no terms is the zero vector). Nothing depends on
//! hash-map order, threads or the machine.

use unicode_segmentation::UnicodeSegmentation;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::ValuationError;

/// The featurizer's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFeaturizer {
    /// The vector's dimension (hash buckets).
    pub dim: usize,
    /// Word n-gram lengths, inclusive (`(1, 2)`: words and word pairs; `(0, 0)`: none).
    pub words: (usize, usize),
    /// Character n-gram lengths, inclusive (`(0, 0)`: none).
    pub chars: (usize, usize),
}

impl Default for TextFeaturizer {
    fn default() -> Self {
        Self {
            dim: 1024,
            words: (1, 2),
            chars: (3, 5),
        }
    }
}

/// A featurizer fitted on a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct TfIdf {
    settings: TextFeaturizer,
    idf: Vec<f64>,
}

impl TextFeaturizer {
    /// The signed term counts of one document.
    fn counts(&self, doc: &str) -> Vec<f64> {
        let mut v = vec![0.0; self.dim];
        let lower = doc.to_lowercase();
        let words: Vec<&str> = lower.unicode_words().collect();
        let mut add = |term: &[u8], seed: u64| {
            let h = xxh3_64_with_seed(term, seed);
            let col = (h % self.dim as u64) as usize;
            v[col] += if h >> 63 == 1 { -1.0 } else { 1.0 };
        };
        let (w0, w1) = self.words;
        for n in w0.max(1)..=w1 {
            for gram in words.windows(n) {
                add(gram.join(" ").as_bytes(), 1);
            }
        }
        let (c0, c1) = self.chars;
        if c1 > 0 {
            for w in &words {
                let padded: Vec<char> = std::iter::once(' ')
                    .chain(w.chars())
                    .chain(std::iter::once(' '))
                    .collect();
                for n in c0.max(1)..=c1 {
                    for gram in padded.windows(n) {
                        let s: String = gram.iter().collect();
                        add(s.as_bytes(), 2);
                    }
                }
            }
        }
        v
    }

    /// Fits the IDF on `corpus`.
    pub fn fit<S: AsRef<str>>(&self, corpus: &[S]) -> Result<TfIdf, ValuationError> {
        if self.dim == 0 {
            return Err(ValuationError::ZeroDimension);
        }
        let mut df = vec![0u64; self.dim];
        for doc in corpus {
            for (d, c) in df.iter_mut().zip(self.counts(doc.as_ref())) {
                if c != 0.0 {
                    *d += 1;
                }
            }
        }
        let n = corpus.len() as f64;
        let idf = df
            .iter()
            .map(|d| ((1.0 + n) / (1.0 + *d as f64)).ln() + 1.0)
            .collect();
        Ok(TfIdf {
            settings: self.clone(),
            idf,
        })
    }
}

impl TfIdf {
    /// The dimension.
    pub fn dim(&self) -> usize {
        self.settings.dim
    }

    /// One document's unit-length TF-IDF vector.
    pub fn transform(&self, doc: &str) -> Vec<f64> {
        let mut v = self.settings.counts(doc);
        for (x, w) in v.iter_mut().zip(&self.idf) {
            *x *= w;
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            for x in &mut v {
                *x /= norm;
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fitted() -> TfIdf {
        TextFeaturizer::default()
            .fit(&[
                "The river floods in spring.",
                "Spring rain, river mud.",
                "A poem about the sea",
            ])
            .unwrap()
    }

    #[test]
    fn vectors_are_unit_length_and_deterministic() {
        let f = fitted();
        let a = f.transform("The river in spring");
        assert_eq!(a.len(), 1024);
        assert!((a.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(a, fitted().transform("The river in spring"));
        // Case and punctuation do not matter; words do.
        assert_eq!(a, f.transform("the RIVER, in spring!"));
        assert_ne!(a, f.transform("the sea in spring"));
        assert!(f.transform("").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn idf_does_not_depend_on_corpus_order() {
        let docs = ["b c d", "a b", "c c c", "ünïcödé wörds"];
        let mut rev = docs;
        rev.reverse();
        let f = TextFeaturizer::default();
        assert_eq!(f.fit(&docs).unwrap(), f.fit(&rev).unwrap());
    }

    #[test]
    fn similar_texts_are_nearer_than_unrelated_ones() {
        let f = fitted();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let q = f.transform("river floods");
        assert!(
            dot(&q, &f.transform("the river floods again"))
                > dot(&q, &f.transform("a poem about the sea"))
        );
    }

    #[test]
    fn a_zero_dimension_is_refused() {
        let f = TextFeaturizer {
            dim: 0,
            ..TextFeaturizer::default()
        };
        assert_eq!(f.fit(&["x"]), Err(ValuationError::ZeroDimension));
    }
}
