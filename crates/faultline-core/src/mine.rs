//! Template mining for what masking misses (user names, file names, bare host names, free-form
//! ids): masked lines are clustered so that tokens which vary inside a cluster become `<*>`.
//!
//! This is the Drain idea (He et al., ICWS 2017): lines are bucketed by token count and by a
//! leading token, and a line joins the most similar cluster of its bucket when enough of its
//! tokens agree position by position. Placeholders from the masker (`<NUM>`, `<IP>`…) and
//! mined wildcards match any token. A cluster's id is fixed when it is created and never changes
//! when its template generalises; the miner's clusters can be exported and restored.

use std::collections::HashMap;

/// The wildcard a mined variable position becomes.
pub const WILDCARD: &str = "<*>";

/// How alike a line must be to a cluster's template to join it (share of positions that
/// agree, placeholders and wildcards agreeing with anything).
pub const DEFAULT_SIMILARITY: f64 = 0.7;

/// One group of lines and its template.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Assigned at creation, never changed.
    pub id: u64,
    pub tokens: Vec<String>,
    pub count: u64,
}

impl Cluster {
    pub fn template(&self) -> String {
        self.tokens.join(" ")
    }
}

/// What [`Miner::add`] did with a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Mined {
    pub cluster_id: u64,
    pub created: bool,
}

/// The clusters seen so far, bucketed by (token count, leading token).
#[derive(Debug, Clone)]
pub struct Miner {
    similarity: f64,
    next_id: u64,
    clusters: Vec<Cluster>,
    /// Token count → leading token → cluster indexes.
    buckets: HashMap<usize, HashMap<String, Vec<usize>>>,
}

impl Default for Miner {
    fn default() -> Self {
        Miner::new(DEFAULT_SIMILARITY)
    }
}

fn is_variable(token: &str) -> bool {
    token == WILDCARD
        || (token.starts_with('<') && token.ends_with('>') && token.len() > 2)
        || token.bytes().any(|b| b.is_ascii_digit())
}

impl Miner {
    pub fn new(similarity: f64) -> Miner {
        Miner { similarity, next_id: 1, clusters: Vec::new(), buckets: HashMap::new() }
    }

    /// The bucket of lines with these tokens: same count, same first token unless it is variable.
    fn bucket(&mut self, tokens: &[&str]) -> &mut Vec<usize> {
        let first = tokens.first().map_or("", |t| if is_variable(t) { WILDCARD } else { t });
        let by_first = self.buckets.entry(tokens.len()).or_default();
        if !by_first.contains_key(first) {
            by_first.insert(first.to_owned(), Vec::new());
        }
        by_first.get_mut(first).expect("inserted above")
    }

    /// Adds one masked line; returns its cluster.
    pub fn add(&mut self, masked: &str) -> Mined {
        let tokens: Vec<&str> = masked.split_whitespace().collect();
        let bucket = std::mem::take(self.bucket(&tokens));
        let mined = self.place(&bucket, &tokens);
        let created = mined.created.then(|| self.clusters.len() - 1);
        let slot = self.bucket(&tokens);
        *slot = bucket;
        slot.extend(created);
        mined
    }

    /// Joins the most similar cluster of `bucket`, or creates one (the caller files it).
    fn place(&mut self, bucket: &[usize], tokens: &[&str]) -> Mined {
        let mut best: Option<(usize, f64)> = None;
        for &index in bucket {
            let cluster = &self.clusters[index];
            let same = cluster
                .tokens
                .iter()
                .zip(tokens)
                .filter(|(a, b)| {
                    a.as_str() == **b || is_variable(a) && is_variable(b) || a.as_str() == WILDCARD
                })
                .count();
            let score = if tokens.is_empty() { 1.0 } else { same as f64 / tokens.len() as f64 };
            if score >= self.similarity && best.is_none_or(|(_, s)| score > s) {
                best = Some((index, score));
            }
        }
        match best {
            Some((index, _)) => {
                let cluster = &mut self.clusters[index];
                for (t, new) in cluster.tokens.iter_mut().zip(tokens) {
                    if t != new && t != WILDCARD {
                        *t = WILDCARD.to_owned();
                    }
                }
                cluster.count += 1;
                Mined { cluster_id: cluster.id, created: false }
            }
            None => {
                let id = self.next_id;
                self.next_id += 1;
                let tokens = tokens.iter().map(|t| (*t).to_owned()).collect();
                self.clusters.push(Cluster { id, tokens, count: 1 });
                Mined { cluster_id: id, created: true }
            }
        }
    }

    /// A cluster's current template.
    pub fn template(&self, cluster_id: u64) -> Option<String> {
        self.clusters.iter().find(|c| c.id == cluster_id).map(Cluster::template)
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// A miner holding these clusters (as exported by [`Miner::clusters`]): the same lines then
    /// map to the same ids.
    pub fn restore(similarity: f64, clusters: Vec<Cluster>) -> Miner {
        let mut miner = Miner::new(similarity);
        for cluster in clusters {
            let tokens: Vec<&str> = cluster.tokens.iter().map(String::as_str).collect();
            miner.next_id = miner.next_id.max(cluster.id + 1);
            let index = miner.clusters.len();
            miner.bucket(&tokens).push(index);
            miner.clusters.push(cluster);
        }
        miner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_words_become_wildcards_and_the_id_stays() {
        let mut m = Miner::default();
        let a = m.add("session opened for user alice by <NUM>");
        let b = m.add("session opened for user bob by <NUM>");
        assert_eq!(a.cluster_id, b.cluster_id);
        assert_eq!(m.template(b.cluster_id).unwrap(), "session opened for user <*> by <NUM>");
        let c = m.add("disk full on volume data");
        assert_ne!(c.cluster_id, a.cluster_id);
    }

    #[test]
    fn restored_miner_maps_the_same_lines_to_the_same_ids() {
        let mut m = Miner::default();
        let ids: Vec<u64> = ["job a failed after retry", "job b failed after retry", "cache miss for key x"]
            .iter()
            .map(|l| m.add(l).cluster_id)
            .collect();
        let mut restored = Miner::restore(DEFAULT_SIMILARITY, m.clusters().to_vec());
        assert_eq!(restored.add("job c failed after retry").cluster_id, ids[0]);
        assert_eq!(restored.add("cache miss for key y").cluster_id, ids[2]);
        assert_eq!(
            restored.add("brand new line here").cluster_id,
            3,
            "new ids continue after the restored ones"
        );
    }
}
