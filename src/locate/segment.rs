//! Object proposals from the image alone: Felzenszwalb and Huttenlocher's graph
//! segmentation (IJCV 2004) into small regions, a hierarchy that merges the most alike
//! adjacent regions first (colour difference plus size), and the boxes of the regions that
//! stood apart longest before being merged, as candidates for the encoder to name.
//!
//! Segmentation as scikit-image's `felzenszwalb` does it on 8-bit values: each channel
//! blurred by a Gaussian (sigma 0.8, radius 3, mirrored borders), an 8-connected pixel
//! graph weighted by the RGB distance, edges taken in ascending order, two regions joined
//! when the edge is below both regions' internal difference plus `k / size`; then regions
//! smaller than `min_size` joined to a neighbour along the same edge order.

use super::{iou, Rect};

/// How proposals are made and kept.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProposalSettings {
    /// Segmentation runs on the image scaled so its short side is at most this (160: on the
    /// localisation set as accurate as 224, at half the pixels).
    pub side: u32,
    /// Felzenszwalb's `k` (on 0..255 values): larger makes larger regions.
    pub k: f32,
    pub sigma: f32,
    /// Regions smaller than this many pixels (of the scaled image) join a neighbour.
    pub min_size: usize,
    /// Kept candidate boxes cover more than `min_area` and less than `max_area` of the
    /// image.
    pub min_area: f32,
    pub max_area: f32,
    /// A candidate overlapping a better one by this IoU or more is dropped.
    pub overlap: f32,
    /// Candidates kept (= encoder passes per image).
    pub count: usize,
}

impl Default for ProposalSettings {
    fn default() -> Self {
        ProposalSettings {
            side: 160,
            k: 200.0 / 255.0,
            sigma: 0.8,
            min_size: 31,
            min_area: 0.01,
            max_area: 0.2,
            overlap: 0.5,
            count: 8,
        }
    }
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let up = parent[parent[i as usize] as usize];
        parent[i as usize] = up;
        i = up;
    }
    i
}

/// The normalised Gaussian kernel of `sigma` (radius `4 sigma + 0.5`).
fn gaussian(sigma: f32) -> Vec<f32> {
    let radius = (4.0 * sigma + 0.5) as isize;
    let mut kernel: Vec<f32> = (-radius..=radius)
        .map(|x| (-(x * x) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|v| *v /= sum);
    kernel
}

/// Index `i` of `0..n` mirrored at the borders (`d c b a | a b c d`).
fn mirror(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i;
    loop {
        if i < 0 {
            i = -i - 1;
        } else if i >= n {
            i = 2 * n - i - 1;
        } else {
            return i as usize;
        }
    }
}

/// Gaussian blur of one `w` x `h` plane, mirrored borders (`d c b a | a b c d`).
///
/// Every output is the sum over the kernel, in kernel order, of weight times value, first
/// along rows then along columns; the loops run over a row at a time (vectorised) but each
/// value's sum is taken in that same order, so the result is the same to the bit as the
/// tap-by-tap sum.
fn blur(plane: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    let kernel = gaussian(sigma);
    let radius = (kernel.len() / 2) as isize;
    let mut tmp = vec![0f32; w * h];
    let mut padded = vec![0f32; w + 2 * radius as usize];
    for y in 0..h {
        let src = &plane[y * w..(y + 1) * w];
        for (x, p) in padded.iter_mut().enumerate() {
            *p = src[mirror(x as isize - radius, w)];
        }
        let dst = &mut tmp[y * w..(y + 1) * w];
        for (d, &p) in dst.iter_mut().zip(&padded) {
            *d = kernel[0] * p;
        }
        for (j, &k) in kernel.iter().enumerate().skip(1) {
            for (d, &p) in dst.iter_mut().zip(&padded[j..]) {
                *d += k * p;
            }
        }
    }
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        let dst = &mut out[y * w..(y + 1) * w];
        for (j, &k) in kernel.iter().enumerate() {
            let r = mirror(y as isize + j as isize - radius, h);
            let src = &tmp[r * w..(r + 1) * w];
            if j == 0 {
                for (d, &p) in dst.iter_mut().zip(src) {
                    *d = k * p;
                }
            } else {
                for (d, &p) in dst.iter_mut().zip(src) {
                    *d += k * p;
                }
            }
        }
    }
    out
}

/// Sorts `keys` by their upper 32 bits, keeping the order of equal ones: an LSD radix
/// sort, 11 bits a pass (the three histograms counted in one read; a digit all keys share
/// costs no pass).
fn radix_sort_by_high(keys: &mut Vec<u64>) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    let digit = |k: u64, pass: u32| ((k >> (32 + pass * BITS)) as usize) & (BUCKETS - 1);
    let mut counts = vec![[0u32; BUCKETS]; 3];
    for &k in keys.iter() {
        for (pass, c) in counts.iter_mut().enumerate() {
            c[digit(k, pass as u32)] += 1;
        }
    }
    let mut other = vec![0u64; keys.len()];
    for (pass, c) in counts.iter().enumerate() {
        if c.iter().any(|&n| n as usize == keys.len()) {
            continue;
        }
        let mut start = [0u32; BUCKETS];
        let mut sum = 0;
        for (s, &n) in start.iter_mut().zip(c) {
            *s = sum;
            sum += n;
        }
        for &k in keys.iter() {
            let d = digit(k, pass as u32);
            other[start[d] as usize] = k;
            start[d] += 1;
        }
        std::mem::swap(keys, &mut other);
    }
}

/// The region of every pixel of a packed RGB `w` x `h` image, numbered from 0 in order of
/// first appearance (row by row); returns the labels and the number of regions.
pub fn felzenszwalb(
    rgb: &[u8],
    w: usize,
    h: usize,
    k: f32,
    sigma: f32,
    min_size: usize,
) -> (Vec<u32>, usize) {
    let n = w * h;
    let planes: Vec<Vec<f32>> = (0..3)
        .map(|c| {
            let plane: Vec<f32> = rgb.chunks_exact(3).map(|p| p[c] as f32).collect();
            blur(&plane, w, h, sigma)
        })
        .collect();
    let (p0, p1, p2) = (&planes[0][..], &planes[1][..], &planes[2][..]);
    let dist = |a: usize, b: usize| -> f32 {
        let (d0, d1, d2) = (p0[a] - p0[b], p1[a] - p1[b], p2[a] - p2[b]);
        (d0 * d0 + d1 * d1 + d2 * d2).sqrt()
    };
    // An edge is its weight's bits (upper half; non-negative weights sort as their bits
    // do) and `4 * a + direction` (lower half), the directions in the order of the other
    // end `b`: up-right, right, down, down-right. Made in (a, b) order and sorted stably by
    // weight, the edges come in (weight, a, b) order.
    let offsets = [1 - w as isize, 1, w as isize, w as isize + 1];
    let mut edges: Vec<u64> = Vec::with_capacity(4 * n);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let mut push = |dir: usize| {
                let j = (i as isize + offsets[dir]) as usize;
                edges.push((u64::from(dist(i, j).to_bits()) << 32) | (4 * i + dir) as u64);
            };
            if x + 1 < w && y > 0 {
                push(0);
            }
            if x + 1 < w {
                push(1);
            }
            if y + 1 < h {
                push(2);
                if x + 1 < w {
                    push(3);
                }
            }
        }
    }
    radix_sort_by_high(&mut edges);
    let ends = |e: u64| -> (f32, u32, u32) {
        let low = e as u32;
        let a = low >> 2;
        let b = (a as isize + offsets[(low & 3) as usize]) as u32;
        (f32::from_bits((e >> 32) as u32), a, b)
    };
    let mut parent: Vec<u32> = (0..n as u32).collect();
    let mut size = vec![1usize; n];
    let mut internal = vec![0f32; n];
    for &e in &edges {
        let (wgt, a, b) = ends(e);
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra == rb {
            continue;
        }
        let ta = internal[ra as usize] + k / size[ra as usize] as f32;
        let tb = internal[rb as usize] + k / size[rb as usize] as f32;
        if wgt < ta.min(tb) {
            parent[rb as usize] = ra;
            size[ra as usize] += size[rb as usize];
            internal[ra as usize] = wgt;
        }
    }
    // Regions under `min_size` joined along the same edge order, until none is left.
    let mut small = (0..n)
        .filter(|&i| parent[i] == i as u32 && size[i] < min_size)
        .count();
    for &e in &edges {
        if small == 0 {
            break;
        }
        let (_, a, b) = ends(e);
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        let (sa, sb) = (size[ra as usize], size[rb as usize]);
        if ra != rb && (sa < min_size || sb < min_size) {
            parent[rb as usize] = ra;
            size[ra as usize] = sa + sb;
            small -= usize::from(sa < min_size) + usize::from(sb < min_size);
            small += usize::from(sa + sb < min_size);
        }
    }
    let mut number = vec![u32::MAX; n];
    let mut labels = vec![0u32; n];
    let mut count = 0u32;
    for (i, label) in labels.iter_mut().enumerate() {
        let r = find(&mut parent, i as u32) as usize;
        if number[r] == u32::MAX {
            number[r] = count;
            count += 1;
        }
        *label = number[r];
    }
    (labels, count as usize)
}

struct Node {
    bbox: Rect,
    area: usize,
    colour: [f64; 3],
    /// The merge cost at which the node joined its parent (`None`: the root).
    merged_at: Option<f64>,
}

/// A candidate merge: its cost and the pair `(a, b)`, `a < b`; ordered so that a max-heap
/// pops the lowest cost first, ties to the lowest pair.
#[derive(PartialEq)]
struct Merge(f64, usize, usize);

impl Eq for Merge {}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Merge {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .0
            .total_cmp(&self.0)
            .then((other.1, other.2).cmp(&(self.1, self.2)))
    }
}

/// Candidate object boxes of a packed RGB `w` x `h` image (its own pixels), most distinct
/// first: the regions of the merge hierarchy (leaves and merged nodes, not the root) whose
/// box covers between `min_area` and `max_area` of the image, ordered by the cost at which
/// they were merged into their parent (high: stood apart), overlapping ones dropped.
///
/// The hierarchy merges, again and again, the adjacent pair of lowest cost (ties: the
/// lowest pair of node numbers) into a new node adjacent to both one's neighbours; a
/// pair's cost depends on its two nodes only, so the pairs wait in a heap and a pair one of
/// whose nodes is already merged is skipped when it comes up.
pub fn proposals(rgb: &[u8], w: usize, h: usize, s: &ProposalSettings) -> Vec<Rect> {
    let (labels, n) = felzenszwalb(rgb, w, h, s.k, s.sigma, s.min_size);
    let mut nodes: Vec<Node> = (0..n)
        .map(|_| Node {
            bbox: Rect {
                x0: u32::MAX,
                y0: u32::MAX,
                x1: 0,
                y1: 0,
            },
            area: 0,
            colour: [0.0; 3],
            merged_at: None,
        })
        .collect();
    // Adjacent label pairs, `(low << 32) | high`, with repeats.
    let mut pairs: Vec<u64> = Vec::new();
    let mut note = |a: u32, b: u32| {
        if a != b {
            let key = (u64::from(a.min(b)) << 32) | u64::from(a.max(b));
            if pairs.last() != Some(&key) {
                pairs.push(key);
            }
        }
    };
    for y in 0..h {
        let row = &labels[y * w..(y + 1) * w];
        for x in 0..w {
            let i = y * w + x;
            let node = &mut nodes[row[x] as usize];
            let b = &mut node.bbox;
            (b.x0, b.y0) = (b.x0.min(x as u32), b.y0.min(y as u32));
            (b.x1, b.y1) = (b.x1.max(x as u32 + 1), b.y1.max(y as u32 + 1));
            node.area += 1;
            for c in 0..3 {
                node.colour[c] += rgb[3 * i + c] as f64;
            }
            if x + 1 < w {
                note(row[x], row[x + 1]);
            }
            if y + 1 < h {
                note(row[x], labels[i + w]);
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    for node in &mut nodes {
        node.colour.iter_mut().for_each(|c| *c /= node.area as f64);
    }
    let total = (w * h) as f64;
    let cost = |nodes: &[Node], a: usize, b: usize| -> f64 {
        let (na, nb) = (&nodes[a], &nodes[b]);
        let d: f64 = (0..3)
            .map(|c| (na.colour[c] - nb.colour[c]).powi(2))
            .sum::<f64>()
            .sqrt();
        d / 255.0 + (na.area + nb.area) as f64 / total
    };
    let mut adjacent: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut heap = std::collections::BinaryHeap::with_capacity(pairs.len());
    for &key in &pairs {
        let (a, b) = ((key >> 32) as usize, key as u32 as usize);
        adjacent[a].push(b);
        adjacent[b].push(a);
        heap.push(Merge(cost(&nodes, a, b), a, b));
    }
    let mut merged = vec![false; n];
    while let Some(Merge(c, a, b)) = heap.pop() {
        if merged[a] || merged[b] {
            continue;
        }
        let id = nodes.len();
        let (na, nb) = (&nodes[a], &nodes[b]);
        let area = na.area + nb.area;
        let mut colour = [0.0; 3];
        for (i, v) in colour.iter_mut().enumerate() {
            *v = (na.colour[i] * na.area as f64 + nb.colour[i] * nb.area as f64) / area as f64;
        }
        let bbox = Rect {
            x0: na.bbox.x0.min(nb.bbox.x0),
            y0: na.bbox.y0.min(nb.bbox.y0),
            x1: na.bbox.x1.max(nb.bbox.x1),
            y1: na.bbox.y1.max(nb.bbox.y1),
        };
        nodes[a].merged_at = Some(c);
        nodes[b].merged_at = Some(c);
        (merged[a], merged[b]) = (true, true);
        nodes.push(Node {
            bbox,
            area,
            colour,
            merged_at: None,
        });
        merged.push(false);
        // The new node's neighbours: the live ones of either part (the merged ones were
        // replaced by their new node in the lists where they occur).
        let mut around: Vec<usize> = std::mem::take(&mut adjacent[a]);
        around.append(&mut adjacent[b]);
        around.retain(|&p| !merged[p]);
        around.sort_unstable();
        around.dedup();
        for &p in &around {
            adjacent[p].push(id);
            heap.push(Merge(cost(&nodes, p, id), p, id));
        }
        adjacent.push(around);
    }
    keep_distinct(&nodes, total, s)
}

/// The boxes of the hierarchy's `nodes` (of an image of `total` pixels) that `s` keeps:
/// covering between `min_area` and `max_area` of the image, not the root, by the cost at
/// which they were merged into their parent (highest first), none overlapping a kept one by
/// `overlap` or more, at most `count`.
fn keep_distinct(nodes: &[Node], total: f64, s: &ProposalSettings) -> Vec<Rect> {
    let mut ranked: Vec<(f64, Rect)> = nodes
        .iter()
        .filter_map(|n| {
            let share = (n.bbox.width() as f64 * n.bbox.height() as f64) / total;
            let inside = share > s.min_area as f64 && share < s.max_area as f64;
            n.merged_at.filter(|_| inside).map(|c| (c, n.bbox))
        })
        .collect();
    ranked.sort_by(|x, y| y.0.total_cmp(&x.0));
    let mut kept: Vec<Rect> = Vec::with_capacity(s.count);
    for (_, r) in ranked {
        if kept.len() == s.count {
            break;
        }
        if kept.iter().all(|k| iou(*k, r) < s.overlap) {
            kept.push(r);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grey 60x40 image with a red 12x10 block at (10, 8) and a blue 16x12 block at
    /// (36, 20).
    fn two_blocks() -> (Vec<u8>, usize, usize) {
        let (w, h) = (60, 40);
        let mut rgb = vec![128u8; w * h * 3];
        let mut fill = |x0: usize, y0: usize, bw: usize, bh: usize, c: [u8; 3]| {
            for y in y0..y0 + bh {
                for x in x0..x0 + bw {
                    rgb[3 * (y * w + x)..3 * (y * w + x) + 3].copy_from_slice(&c);
                }
            }
        };
        fill(10, 8, 12, 10, [220, 30, 30]);
        fill(36, 20, 16, 12, [30, 30, 220]);
        (rgb, w, h)
    }

    #[test]
    fn a_flat_image_is_one_region_and_blocks_are_their_own() {
        let (w, h) = (20, 10);
        let (labels, n) = felzenszwalb(&vec![77u8; w * h * 3], w, h, 200.0 / 255.0, 0.8, 20);
        assert_eq!((n, labels.iter().all(|&l| l == 0)), (1, true));
        let (rgb, w, h) = two_blocks();
        let (labels, n) = felzenszwalb(&rgb, w, h, 200.0 / 255.0, 0.8, 20);
        assert!(n >= 3, "{n} regions");
        // Block centres are in different regions from the background and each other.
        let at = |x: usize, y: usize| labels[y * w + x];
        assert_ne!(at(15, 12), at(0, 0));
        assert_ne!(at(43, 25), at(0, 0));
        assert_ne!(at(15, 12), at(43, 25));
    }

    #[test]
    fn the_blocks_come_out_as_proposals() {
        let (rgb, w, h) = two_blocks();
        let settings = ProposalSettings {
            min_size: 20,
            ..ProposalSettings::default()
        };
        let found = proposals(&rgb, w, h, &settings);
        assert!(!found.is_empty() && found.len() <= 8);
        let red = Rect {
            x0: 10,
            y0: 8,
            x1: 22,
            y1: 18,
        };
        let blue = Rect {
            x0: 36,
            y0: 20,
            x1: 52,
            y1: 32,
        };
        for truth in [red, blue] {
            let best = found.iter().map(|&r| iou(r, truth)).fold(0.0, f32::max);
            assert!(best > 0.7, "{truth:?}: best IoU {best} in {found:?}");
        }
        // No two kept boxes overlap by half or more.
        for (i, a) in found.iter().enumerate() {
            for b in &found[i + 1..] {
                assert!(iou(*a, *b) < 0.5);
            }
        }
    }

    #[test]
    fn the_blur_keeps_a_constant_and_mirrors_at_borders() {
        let flat = blur(&[5.0; 12], 4, 3, 0.8);
        assert!(flat.iter().all(|v| (v - 5.0).abs() < 1e-5));
        // A step at the left border: mirrored, the first column stays closest to its side.
        let step: Vec<f32> = (0..24).map(|i| if i % 8 < 4 { 0.0 } else { 8.0 }).collect();
        let b = blur(&step, 8, 3, 0.8);
        assert!(b[0] < 0.01 && b[7] > 7.99 && (b[3] + b[4] - 8.0).abs() < 1e-4);
    }

    /// The first, straightforward implementation (closures per tap and edge, a comparison
    /// sort of the edges, the hierarchy's pair set rebuilt after every merge): the
    /// optimised one must give the same regions and proposals.
    mod reference {
        use std::collections::BTreeSet;

        use super::super::{find, Node, ProposalSettings, Rect};

        /// Gaussian blur of one `w` x `h` plane, mirrored borders (`d c b a | a b c d`).
        fn blur(plane: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
            let radius = (4.0 * sigma + 0.5) as isize;
            let mut kernel: Vec<f32> = (-radius..=radius)
                .map(|x| (-(x * x) as f32 / (2.0 * sigma * sigma)).exp())
                .collect();
            let sum: f32 = kernel.iter().sum();
            kernel.iter_mut().for_each(|v| *v /= sum);
            let mirror = |i: isize, n: usize| -> usize {
                let n = n as isize;
                let mut i = i;
                loop {
                    if i < 0 {
                        i = -i - 1;
                    } else if i >= n {
                        i = 2 * n - i - 1;
                    } else {
                        return i as usize;
                    }
                }
            };
            let mut tmp = vec![0f32; w * h];
            for y in 0..h {
                for x in 0..w {
                    tmp[y * w + x] = kernel
                        .iter()
                        .enumerate()
                        .map(|(j, k)| {
                            k * plane[y * w + mirror(x as isize + j as isize - radius, w)]
                        })
                        .sum();
                }
            }
            let mut out = vec![0f32; w * h];
            for y in 0..h {
                for x in 0..w {
                    out[y * w + x] = kernel
                        .iter()
                        .enumerate()
                        .map(|(j, k)| k * tmp[mirror(y as isize + j as isize - radius, h) * w + x])
                        .sum();
                }
            }
            out
        }

        /// The region of every pixel of a packed RGB `w` x `h` image, numbered from 0 in order of
        /// first appearance (row by row); returns the labels and the number of regions.
        pub fn felzenszwalb(
            rgb: &[u8],
            w: usize,
            h: usize,
            k: f32,
            sigma: f32,
            min_size: usize,
        ) -> (Vec<u32>, usize) {
            let planes: Vec<Vec<f32>> = (0..3)
                .map(|c| {
                    let plane: Vec<f32> = rgb.chunks_exact(3).map(|p| p[c] as f32).collect();
                    blur(&plane, w, h, sigma)
                })
                .collect();
            let dist = |a: usize, b: usize| -> f32 {
                planes
                    .iter()
                    .map(|p| (p[a] - p[b]) * (p[a] - p[b]))
                    .sum::<f32>()
                    .sqrt()
            };
            let mut edges: Vec<(f32, u32, u32)> = Vec::with_capacity(4 * w * h);
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    let mut push = |j: usize| edges.push((dist(i, j), i as u32, j as u32));
                    if x + 1 < w {
                        push(i + 1);
                        if y + 1 < h {
                            push(i + w + 1);
                        }
                        if y > 0 {
                            push(i - w + 1);
                        }
                    }
                    if y + 1 < h {
                        push(i + w);
                    }
                }
            }
            // Weights are non-negative: their bit patterns sort as the values do.
            edges.sort_unstable_by_key(|e| (e.0.to_bits(), e.1, e.2));
            let n = w * h;
            let mut parent: Vec<u32> = (0..n as u32).collect();
            let mut size = vec![1usize; n];
            let mut internal = vec![0f32; n];
            for &(wgt, a, b) in &edges {
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                if ra == rb {
                    continue;
                }
                let ta = internal[ra as usize] + k / size[ra as usize] as f32;
                let tb = internal[rb as usize] + k / size[rb as usize] as f32;
                if wgt < ta.min(tb) {
                    parent[rb as usize] = ra;
                    size[ra as usize] += size[rb as usize];
                    internal[ra as usize] = wgt;
                }
            }
            for &(_, a, b) in &edges {
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                if ra != rb && (size[ra as usize] < min_size || size[rb as usize] < min_size) {
                    parent[rb as usize] = ra;
                    size[ra as usize] += size[rb as usize];
                }
            }
            let mut number = vec![u32::MAX; n];
            let mut labels = vec![0u32; n];
            let mut count = 0u32;
            for (i, label) in labels.iter_mut().enumerate() {
                let r = find(&mut parent, i as u32) as usize;
                if number[r] == u32::MAX {
                    number[r] = count;
                    count += 1;
                }
                *label = number[r];
            }
            (labels, count as usize)
        }

        /// Candidate object boxes of a packed RGB `w` x `h` image (its own pixels), most distinct
        /// first: the regions of the merge hierarchy (leaves and merged nodes, not the root) whose
        /// box covers between `min_area` and `max_area` of the image, ordered by the cost at which
        /// they were merged into their parent (high: stood apart), overlapping ones dropped.
        pub fn proposals(rgb: &[u8], w: usize, h: usize, s: &ProposalSettings) -> Vec<Rect> {
            let (labels, n) = felzenszwalb(rgb, w, h, s.k, s.sigma, s.min_size);
            let mut nodes: Vec<Node> = (0..n)
                .map(|_| Node {
                    bbox: Rect {
                        x0: u32::MAX,
                        y0: u32::MAX,
                        x1: 0,
                        y1: 0,
                    },
                    area: 0,
                    colour: [0.0; 3],
                    merged_at: None,
                })
                .collect();
            let mut adjacent = BTreeSet::new();
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    let node = &mut nodes[labels[i] as usize];
                    let b = &mut node.bbox;
                    (b.x0, b.y0) = (b.x0.min(x as u32), b.y0.min(y as u32));
                    (b.x1, b.y1) = (b.x1.max(x as u32 + 1), b.y1.max(y as u32 + 1));
                    node.area += 1;
                    for c in 0..3 {
                        node.colour[c] += rgb[3 * i + c] as f64;
                    }
                    for j in [(x + 1 < w).then(|| i + 1), (y + 1 < h).then(|| i + w)]
                        .into_iter()
                        .flatten()
                    {
                        let (a, b) = (labels[i], labels[j]);
                        if a != b {
                            adjacent.insert((a.min(b) as usize, a.max(b) as usize));
                        }
                    }
                }
            }
            for node in &mut nodes {
                node.colour.iter_mut().for_each(|c| *c /= node.area as f64);
            }
            let total = (w * h) as f64;
            let cost = |nodes: &[Node], (a, b): (usize, usize)| -> f64 {
                let (na, nb) = (&nodes[a], &nodes[b]);
                let d: f64 = (0..3)
                    .map(|c| (na.colour[c] - nb.colour[c]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                d / 255.0 + (na.area + nb.area) as f64 / total
            };
            while let Some((c, (a, b))) = adjacent
                .iter()
                .map(|&e| (cost(&nodes, e), e))
                .min_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)))
            {
                let id = nodes.len();
                let (na, nb) = (&nodes[a], &nodes[b]);
                let area = na.area + nb.area;
                let mut colour = [0.0; 3];
                for (i, v) in colour.iter_mut().enumerate() {
                    *v = (na.colour[i] * na.area as f64 + nb.colour[i] * nb.area as f64)
                        / area as f64;
                }
                let bbox = Rect {
                    x0: na.bbox.x0.min(nb.bbox.x0),
                    y0: na.bbox.y0.min(nb.bbox.y0),
                    x1: na.bbox.x1.max(nb.bbox.x1),
                    y1: na.bbox.y1.max(nb.bbox.y1),
                };
                nodes[a].merged_at = Some(c);
                nodes[b].merged_at = Some(c);
                nodes.push(Node {
                    bbox,
                    area,
                    colour,
                    merged_at: None,
                });
                adjacent = adjacent
                    .into_iter()
                    .filter(|&e| e != (a, b))
                    .map(|(p, q)| {
                        let p = if p == a || p == b { id } else { p };
                        let q = if q == a || q == b { id } else { q };
                        (p.min(q), p.max(q))
                    })
                    .filter(|(p, q)| p != q)
                    .collect();
            }
            // The ranking is the production code's: what is compared is the hierarchy.
            super::super::keep_distinct(&nodes, total, s)
        }
    }

    /// Deterministic noise, `levels` grey levels per channel (few levels: many equal
    /// edge weights).
    fn noise(w: usize, h: usize, levels: u32, seed: u32) -> Vec<u8> {
        (0..w * h * 3)
            .map(|i| {
                let r = ((i as u32) ^ seed).wrapping_mul(2654435761) >> 16;
                ((r % levels) * (255 / (levels - 1).max(1))) as u8
            })
            .collect()
    }

    #[test]
    fn the_fast_segmentation_and_hierarchy_give_the_reference_results() {
        let mut cases: Vec<(Vec<u8>, usize, usize)> = vec![
            two_blocks(),
            (noise(57, 41, 256, 1), 57, 41),
            (noise(40, 33, 3, 2), 40, 33),
            (noise(3, 2, 2, 3), 3, 2),
            (noise(1, 9, 256, 4), 1, 9),
        ];
        // The localisation scenes (224 x 224), a few in a debug build.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tabletop/locate");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        files.sort();
        let take = if cfg!(debug_assertions) {
            4
        } else {
            files.len()
        };
        for f in files.iter().take(take) {
            let img = ::image::open(f).unwrap().to_rgb8();
            let (w, h) = (img.width() as usize, img.height() as usize);
            cases.push((img.into_raw(), w, h));
        }
        assert!(cases.len() >= 9);
        let settings = ProposalSettings::default();
        for (rgb, w, h) in &cases {
            let (w, h) = (*w, *h);
            let (k, sigma, min_size) = (settings.k, settings.sigma, settings.min_size);
            assert_eq!(
                felzenszwalb(rgb, w, h, k, sigma, min_size),
                reference::felzenszwalb(rgb, w, h, k, sigma, min_size),
                "{w}x{h}"
            );
            for count in [8, 1000] {
                let s = ProposalSettings {
                    count,
                    min_area: 0.0,
                    max_area: 1.0,
                    ..settings.clone()
                };
                assert_eq!(
                    proposals(rgb, w, h, &s),
                    reference::proposals(rgb, w, h, &s),
                    "{w}x{h}"
                );
            }
            assert_eq!(
                proposals(rgb, w, h, &settings),
                reference::proposals(rgb, w, h, &settings),
                "{w}x{h}"
            );
        }
    }
}
