//! Crafted hostile GGUF inputs: one per error variant, plus the llama.cpp parser CVE
//! classes. Each must be a typed error, never a panic, and (checked by a per-thread
//! allocation tracker) never an allocation proportional to a claimed size.

mod gguf_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use gguf_common::B;
use tenpak_converters::gguf::{fuzz_parse, GgufError, GgufFile, GgufLimits};

/// Records the largest single allocation made by the current thread.
struct Tracker;
thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}
// SAFETY: forwards every call to the system allocator unchanged; the thread-local
// bookkeeping is a const-initialised Cell with no destructor, so it never allocates.
unsafe impl GlobalAlloc for Tracker {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(l.size())));
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: p was allocated by System with l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(n)));
        // SAFETY: forwarded contract.
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static GLOBAL: Tracker = Tracker;

/// Parses `bytes`, asserting it fails without any allocation above 64 KiB, and
/// returns the error. Also runs the fuzz entry on the same input.
fn fail(bytes: &[u8]) -> GgufError {
    LARGEST.with(|c| c.set(0));
    let r = GgufFile::parse(bytes);
    let largest = LARGEST.with(|c| c.get());
    assert!(
        largest <= (64 << 10).max(bytes.len() * 2),
        "allocated {largest} bytes for a {}-byte input",
        bytes.len()
    );
    fuzz_parse(bytes);
    match r {
        Ok(_) => panic!("hostile input parsed"),
        Err(e) => e,
    }
}

fn one_kv(k: &str, ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = B::header(3, 0, 1);
    b.str(k).u32(ty).raw(payload);
    b.bytes()
}

/// A valid file with one F32 tensor of `dims` at `offset` and `data_len` data bytes.
fn one_tensor(name: &str, dims: &[u64], ty: u32, offset: u64, data_len: usize) -> Vec<u8> {
    let mut b = B::header(3, 1, 0);
    b.tensor(name, dims, ty, offset).pad(32).zeros(data_len);
    b.bytes()
}

#[test]
fn eof_everywhere_in_a_valid_file() {
    let mut b = B::header(3, 1, 2);
    b.kv_u32("general.alignment", 32)
        .str("a.s")
        .u32(8)
        .str("hello")
        .tensor("t", &[4], 0, 0)
        .pad(32)
        .zeros(16);
    let full = b.bytes();
    assert!(GgufFile::parse(&full).is_ok());
    // Every strict prefix that cuts the header or the tensor data must fail cleanly.
    for n in 0..full.len() {
        let e = fail(&full[..n]);
        assert!(
            matches!(
                e,
                GgufError::UnexpectedEof { .. }
                    | GgufError::TensorOutOfBounds { .. }
                    // counts checked against the bytes left before anything is read
                    | GgufError::TooManyKeys { .. }
                    | GgufError::TooManyTensors { .. }
            ),
            "prefix {n}: {e:?}"
        );
    }
}

#[test]
fn bad_magic_and_version() {
    let mut b = B::header(3, 0, 0);
    b.0[0] = b'X';
    assert!(matches!(fail(&b.0), GgufError::BadMagic(m) if &m == b"XGUF"));
    for v in [0, 1, 4, u32::MAX] {
        assert!(matches!(
            fail(&B::header(v, 0, 0).0),
            GgufError::UnsupportedVersion(x) if x == v
        ));
    }
    // v2 is accepted.
    assert_eq!(GgufFile::parse(&B::header(2, 0, 0).0).unwrap().version(), 2);
}

#[test]
fn cve_class_d_count_bombs() {
    // Key-count bomb: 2^62 KVs claimed, 0 bytes follow.
    let e = fail(&B::header(3, 0, 1 << 62).0);
    assert!(matches!(e, GgufError::TooManyKeys { count, .. } if count == 1 << 62));
    // Tensor-count bomb (also i64-negative counts).
    for c in [1u64 << 62, u64::MAX] {
        let e = fail(&B::header(3, c, 0).0);
        assert!(matches!(e, GgufError::TooManyTensors { count, .. } if count == c));
    }
    // Counts within the configured limit but beyond what the bytes can hold.
    let mut b = B::header(3, 0, 1000);
    b.kv_u32("a", 1);
    assert!(matches!(fail(&b.0), GgufError::TooManyKeys { max: 1, .. }));
    // Configured limit.
    let mut b = B::header(3, 0, 3);
    for k in ["a", "b", "c"] {
        b.kv_u32(k, 1);
    }
    let lim = GgufLimits {
        max_kv: 2,
        ..GgufLimits::default()
    };
    assert!(matches!(
        GgufFile::parse_with_limits(&b.0, lim),
        Err(GgufError::TooManyKeys { count: 3, max: 2 })
    ));
}

#[test]
fn cve_class_c_string_and_array_bombs() {
    // String value length 2^62.
    let mut p = B::default();
    p.u64(1 << 62);
    assert!(matches!(
        fail(&one_kv("k", 8, &p.0)),
        GgufError::StringTooLong { len, .. } if len == 1 << 62
    ));
    // Key length u64::MAX.
    let mut b = B::header(3, 0, 1);
    b.u64(u64::MAX).zeros(16);
    assert!(matches!(fail(&b.0), GgufError::StringTooLong { .. }));
    // Array of 2^62 u32 (would need 2^64 bytes).
    let mut p = B::default();
    p.u32(4).u64(1 << 62);
    assert!(matches!(
        fail(&one_kv("k", 9, &p.0)),
        GgufError::ArrayTooLong { len, max: 0, .. } if len == 1 << 62
    ));
    // Array of strings: 1000 claimed, 3 present.
    let mut p = B::default();
    p.u32(8).u64(1000).str("a").str("b").str("c");
    assert!(matches!(
        fail(&one_kv("k", 9, &p.0)),
        GgufError::ArrayTooLong { .. }
    ));
    // A string that is within limits but longer than the file: EOF, no allocation.
    let mut p = B::default();
    p.u64(1 << 20).raw(b"abc");
    assert!(matches!(
        fail(&one_kv("k", 8, &p.0)),
        GgufError::UnexpectedEof { .. }
    ));
    // String limit honoured.
    let mut p = B::default();
    p.str("abcdef");
    let lim = GgufLimits {
        max_string_len: 5,
        ..GgufLimits::default()
    };
    assert!(matches!(
        GgufFile::parse_with_limits(&one_kv("k", 8, &p.0), lim),
        Err(GgufError::StringTooLong { len: 6, max: 5, .. })
    ));
    // Array limit honoured.
    let mut p = B::default();
    p.u32(0).u64(10).zeros(10);
    let lim = GgufLimits {
        max_array_len: 9,
        ..GgufLimits::default()
    };
    assert!(matches!(
        GgufFile::parse_with_limits(&one_kv("k", 9, &p.0), lim),
        Err(GgufError::ArrayTooLong {
            len: 10,
            max: 9,
            ..
        })
    ));
}

#[test]
fn metadata_size_limit() {
    let mut p = B::default();
    p.str(&"x".repeat(200));
    let lim = GgufLimits {
        max_metadata_bytes: 100,
        ..GgufLimits::default()
    };
    assert!(matches!(
        GgufFile::parse_with_limits(&one_kv("k", 8, &p.0), lim),
        Err(GgufError::MetadataTooLarge { max: 100, .. })
    ));
}

#[test]
fn value_errors() {
    // Invalid UTF-8 in a value and in a key.
    let mut p = B::default();
    p.u64(2).raw(&[0xff, 0xfe]);
    assert!(matches!(
        fail(&one_kv("k", 8, &p.0)),
        GgufError::InvalidUtf8 { .. }
    ));
    let mut b = B::header(3, 0, 1);
    b.u64(1).u8(0x80).u32(4).u32(0);
    assert!(matches!(fail(&b.0), GgufError::InvalidUtf8 { .. }));
    // Empty key.
    assert!(matches!(
        fail(&one_kv("", 4, &[0; 4])),
        GgufError::BadKeyLength { len: 0, .. }
    ));
    // Duplicate key.
    let mut b = B::header(3, 0, 2);
    b.kv_u32("a.b", 1).kv_u32("a.b", 2);
    assert!(matches!(fail(&b.0), GgufError::DuplicateKey(k) if k == "a.b"));
    // Unknown value type, as a value and as an array element type.
    assert!(matches!(
        fail(&one_kv("k", 13, &[0; 8])),
        GgufError::UnknownValueType { type_id: 13, .. }
    ));
    let mut p = B::default();
    p.u32(99).u64(0);
    assert!(matches!(
        fail(&one_kv("k", 9, &p.0)),
        GgufError::UnknownValueType { type_id: 99, .. }
    ));
    // Nested array.
    let mut p = B::default();
    p.u32(9).u64(1).u32(4).u64(1).u32(7);
    assert!(matches!(fail(&one_kv("k", 9, &p.0)), GgufError::NestedArray(k) if k == "k"));
    // Bool byte 2, scalar and in an array.
    assert!(matches!(
        fail(&one_kv("k", 7, &[2])),
        GgufError::BadBool { value: 2, .. }
    ));
    let mut p = B::default();
    p.u32(7).u64(2).u8(1).u8(7);
    assert!(matches!(
        fail(&one_kv("k", 9, &p.0)),
        GgufError::BadBool { value: 7, .. }
    ));
}

#[test]
fn alignment_errors() {
    assert!(matches!(
        fail(&one_kv("general.alignment", 10, &[32, 0, 0, 0, 0, 0, 0, 0])),
        GgufError::AlignmentWrongType
    ));
    for a in [0u32, 24, 33] {
        assert!(matches!(
            fail(&one_kv("general.alignment", 4, &a.to_le_bytes())),
            GgufError::BadAlignment(x) if x == a
        ));
    }
}

#[test]
fn tensor_info_errors() {
    // Name of 64 bytes, and empty.
    let long = "n".repeat(64);
    assert!(matches!(
        fail(&one_tensor(&long, &[1], 0, 0, 4)),
        GgufError::BadTensorName { len: 64, .. }
    ));
    assert!(GgufFile::parse(&one_tensor(&"n".repeat(63), &[1], 0, 0, 4)).is_ok());
    assert!(matches!(
        fail(&one_tensor("", &[1], 0, 0, 4)),
        GgufError::BadTensorName { len: 0, .. }
    ));
    // Duplicate name.
    let mut b = B::header(3, 2, 0);
    b.tensor("t", &[8], 0, 0)
        .tensor("t", &[8], 0, 32)
        .pad(32)
        .zeros(64);
    assert!(matches!(fail(&b.0), GgufError::DuplicateTensorName(n) if n == "t"));
    // Five dims.
    assert!(matches!(
        fail(&one_tensor("t", &[1, 1, 1, 1, 1], 0, 0, 4)),
        GgufError::TooManyDims { n_dims: 5, .. }
    ));
    // Dim > i64::MAX.
    assert!(matches!(
        fail(&one_tensor("t", &[1 << 63], 0, 0, 4)),
        GgufError::DimTooLarge { .. }
    ));
    // Removed and out-of-table type ids.
    for ty in [4u32, 5, 31, 36, 38, 40, u32::MAX] {
        assert!(matches!(
            fail(&one_tensor("t", &[32], ty, 0, 64)),
            GgufError::UnknownGgmlType { type_id, .. } if type_id == ty
        ));
    }
    // Q8_0 with a row of 33 elements.
    assert!(matches!(
        fail(&one_tensor("t", &[33, 1], 8, 0, 64)),
        GgufError::RowNotBlockMultiple {
            ne0: 33,
            block: 32,
            ..
        }
    ));
    // Misaligned offset.
    let mut b = B::header(3, 2, 0);
    b.tensor("a", &[1], 0, 0)
        .tensor("b", &[1], 0, 4)
        .pad(32)
        .zeros(64);
    assert!(matches!(
        fail(&b.0),
        GgufError::MisalignedOffset {
            offset: 4,
            alignment: 32,
            ..
        }
    ));
}

#[test]
fn cve_class_a_element_count_and_heap_overflow() {
    // ne product overflows u64 (2^32 * 2^32).
    assert!(matches!(
        fail(&one_tensor("t", &[1 << 32, 1 << 32], 0, 0, 4)),
        GgufError::ElementCountOverflow(_)
    ));
    // Product fits in i64 (2^62) but * 4 bytes does not.
    assert!(matches!(
        fail(&one_tensor("t", &[1 << 31, 1 << 31], 0, 0, 4)),
        GgufError::ByteSizeOverflow(_)
    ));
    // Many-dim product that wraps to a small number in u64 arithmetic: 2^16 four times.
    assert!(matches!(
        fail(&one_tensor("t", &[1 << 16; 4], 0, 0, 4)),
        GgufError::ElementCountOverflow(_)
    ));
    // Data range past EOF (the heap-overflow-on-read shape): 1024 floats, 16 bytes present.
    assert!(matches!(
        fail(&one_tensor("t", &[1024], 0, 0, 16)),
        GgufError::TensorOutOfBounds { end, file_len, .. } if end > file_len
    ));
}

#[test]
fn cve_class_b_offset_and_total_size_overflow() {
    // offset + data start wraps u64 (offset is aligned).
    let off = !31u64;
    assert!(matches!(
        fail(&one_tensor("t", &[8], 0, off, 32)),
        GgufError::OffsetOverflow(n) if n == "t"
    ));
    // start fits, start + size wraps.
    let off = (u64::MAX - 127) & !31;
    assert!(matches!(
        fail(&one_tensor("t", &[1 << 40], 0, off - 4096, 32)),
        GgufError::OffsetOverflow(_) | GgufError::TensorOutOfBounds { .. }
    ));
    // Many tensors whose sizes sum past u64 (each 2^61 bytes of F32): the naive total
    // size computation overflows; we stop at the first out-of-bounds range.
    let mut b = B::header(3, 16, 0);
    for i in 0..16u64 {
        b.tensor(&format!("t{i}"), &[1 << 59], 0, i << 61);
    }
    b.pad(32);
    assert!(matches!(fail(&b.0), GgufError::TensorOutOfBounds { .. }));
}

#[test]
fn overlap_rejected_gap_flagged() {
    // Overlap: b starts inside a.
    let mut b = B::header(3, 2, 0);
    b.tensor("a", &[16], 0, 0)
        .tensor("b", &[8], 0, 32)
        .pad(32)
        .zeros(96);
    assert!(matches!(fail(&b.0), GgufError::TensorOverlap { a, b } if a == "a" && b == "b"));
    // Gap: parses, data accessible, flagged as not llama.cpp-strict.
    let mut b = B::header(3, 2, 0);
    b.tensor("a", &[8], 0, 0).tensor("b", &[8], 0, 64).pad(32);
    let start = b.0.len();
    b.zeros(96);
    b.0[start + 64] = 7;
    let f = GgufFile::parse(&b.0).unwrap();
    assert!(!f.strict_offsets());
    assert_eq!(f.tensor_data(&f.tensors()[1])[0], 7);
    // Reordered data (b before a): also flagged, not rejected.
    let mut b = B::header(3, 2, 0);
    b.tensor("a", &[8], 0, 32)
        .tensor("b", &[8], 0, 0)
        .pad(32)
        .zeros(64);
    assert!(!GgufFile::parse(&b.0).unwrap().strict_offsets());
    // Minimal packing: strict.
    let mut b = B::header(3, 2, 0);
    b.tensor("a", &[3], 0, 0)
        .tensor("b", &[8], 0, 32)
        .pad(32)
        .zeros(64);
    assert!(GgufFile::parse(&b.0).unwrap().strict_offsets());
}

#[test]
fn zero_sized_tensors_and_scalars() {
    // A zero dim gives a zero-byte tensor; zero dims gives a 1-element scalar.
    let mut b = B::header(3, 2, 0);
    b.tensor("z", &[0, 4], 0, 0)
        .tensor("s", &[], 0, 0)
        .pad(32)
        .zeros(32);
    let f = GgufFile::parse(&b.0).unwrap();
    assert_eq!(f.tensors()[0].n_bytes, 0);
    assert_eq!(f.tensors()[1].n_bytes, 4);
    assert_eq!(f.tensors()[1].n_elements(), 1);
}

#[test]
fn random_mutations_never_panic() {
    let mut b = B::header(3, 2, 3);
    b.kv_u32("general.alignment", 32)
        .str("s")
        .u32(8)
        .str("str")
        .str("arr")
        .u32(9)
        .u32(8)
        .u64(2)
        .str("x")
        .str("yy")
        .tensor("a", &[32, 2], 8, 0)
        .tensor("b", &[4], 0, 96)
        .pad(32)
        .raw(&gguf_common::rand_bytes(1, 128));
    let base = b.bytes();
    assert!(GgufFile::parse(&base).is_ok());
    let noise = gguf_common::rand_bytes(7, 40_000);
    for i in 0..10_000 {
        let mut m = base.clone();
        let pos = (u32::from_le_bytes([noise[4 * i % 39_996], noise[4 * i % 39_996 + 1], 0, 0])
            as usize)
            % m.len();
        m[pos] = noise[(4 * i + 2) % 40_000];
        fuzz_parse(&m);
        let _ = GgufFile::parse(&m);
    }
}

#[test]
fn allocation_tracker_sees_real_allocations() {
    // Guards the tracker itself: a genuine 1 MiB string must show up as >= 1 MiB.
    let mut p = B::default();
    p.str(&"x".repeat(1 << 20));
    let bytes = one_kv("k", 8, &p.0);
    LARGEST.with(|c| c.set(0));
    let f = GgufFile::parse(&bytes).unwrap();
    assert!(LARGEST.with(|c| c.get()) >= 1 << 20);
    assert_eq!(f.get_str("k").map(str::len), Some(1 << 20));
}
