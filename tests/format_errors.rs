//! Every error the `.tpk` reader can report, each from crafted bytes, plus the writer's
//! safety properties and a no-panic property over thousands of mutated files.
//!
//! Files are crafted by writing a valid file with `TpkWriter`, patching fields, and then
//! recomputing the checksums that must still pass, so each test reaches the check it names.

use std::path::Path;

use half::f16;
use serde_json::json;
use tenpak::codec::staged::{self, Stage};
use tenpak::format::layout::NO_SECTION;
use tenpak::format::{
    CodecId, Dtype, ElemType, OpenOptions, SectionKind, TensorEntry, WriterOptions,
};
use tenpak::{Error, TpkFile, TpkWriter};

macro_rules! assert_err {
    ($res:expr, $pat:pat $(if $guard:expr)? $(,)?) => {
        match $res {
            Err($pat) $(if $guard)? => {}
            Err(other) => panic!("expected {}, got {other:?}", stringify!($pat)),
            Ok(_) => panic!("expected {}, got Ok", stringify!($pat)),
        }
    };
}

fn open(b: &[u8]) -> tenpak::Result<TpkFile> {
    TpkFile::from_bytes(b, OpenOptions::default())
}

fn write_file(path: &Path, build: impl FnOnce(&mut TpkWriter) -> tenpak::Result<()>) {
    let mut w = TpkWriter::create(path).expect("writer starts");
    build(&mut w).expect("file builds");
    w.finish().expect("writer finishes");
}

fn build(build: impl FnOnce(&mut TpkWriter) -> tenpak::Result<()>) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("f.tpk");
    write_file(&path, build);
    std::fs::read(&path).expect("written file is readable")
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| f16::from_f32(x).to_le_bytes())
        .collect()
}

const INT4: Stage = Stage::Int {
    bits: 4,
    group: 8,
    symmetric: false,
    refine: false,
};

fn staged_entry(
    name: &str,
    shape: &[u64],
    stages: &[Stage],
    sections: Vec<tenpak::format::SectionId>,
) -> TensorEntry {
    TensorEntry {
        name: name.into(),
        shape: shape.to_vec(),
        source_dtype: Dtype::F16,
        codec: CodecId::Staged,
        params: staged::encode_params(stages),
        sections,
    }
}

/// Sections: 0 metadata, 1 codes, 2 scales, 3 offsets (tensor "t0", int4 [2, 10]),
/// 4 raw f16 (tensor "t1", [3]).
fn base_with(metadata: bool) -> Vec<u8> {
    build(|w| {
        if metadata {
            w.set_metadata(&json!({"tenpak": {"version": "test"}, "user": {"k": "v"}}))?;
        }
        let codes: Vec<u8> = (0u8..16).map(|i| i.wrapping_mul(37)).collect();
        let c = w.add_section(SectionKind::Codes, ElemType::Packed4, &codes)?;
        let s = w.add_section(
            SectionKind::Scales,
            ElemType::F16,
            &f16_bytes(&[0.5, 1.0, 2.0, 4.0]),
        )?;
        let o = w.add_section(
            SectionKind::Offsets,
            ElemType::F16,
            &f16_bytes(&[-1.0, 0.0, 1.0, 2.0]),
        )?;
        w.add_tensor(staged_entry("t0", &[2, 10], &[INT4], vec![c, s, o]))?;
        let r = w.add_section(
            SectionKind::Raw,
            ElemType::F16,
            &f16_bytes(&[1.0, 2.0, 3.0]),
        )?;
        w.add_tensor(staged_entry(
            "t1",
            &[3],
            &[Stage::Raw { dtype: Dtype::F16 }],
            vec![r],
        ))
    })
}

fn base() -> Vec<u8> {
    base_with(true)
}

/// Field access and checksum repair on a file's bytes.
struct Tpk(Vec<u8>);

impl Tpk {
    fn new() -> Self {
        Tpk(base())
    }
    fn rd32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }
    fn rd64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }
    fn wr16(&mut self, at: usize, v: u16) {
        self.0[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn wr32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn wr64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn trailer(&self) -> usize {
        self.0.len() - 64
    }
    fn dir(&self) -> usize {
        self.rd64(self.trailer()) as usize
    }
    /// Absolute offset of directory-header field at `off`.
    fn dh(&self, off: usize) -> usize {
        self.dir() + off
    }
    fn dh_get(&self, off: usize) -> usize {
        self.rd32(self.dh(off)) as usize
    }
    fn tensor(&self, i: usize) -> usize {
        self.dir() + self.dh_get(16) + i * self.dh_get(4)
    }
    fn section(&self, i: usize) -> usize {
        self.dir() + self.dh_get(20) + i * self.dh_get(12)
    }
    fn refs(&self) -> usize {
        self.dir() + self.dh_get(24)
    }
    fn dims(&self) -> usize {
        self.dir() + self.dh_get(32)
    }
    fn params(&self) -> usize {
        self.dir() + self.dh_get(40)
    }
    fn strings(&self) -> usize {
        self.dir() + self.dh_get(48)
    }
    fn fix_header(&mut self) -> &mut Self {
        let c = crc32fast::hash(&self.0[..60]);
        self.wr32(60, c);
        self
    }
    fn fix_trailer(&mut self) -> &mut Self {
        let t = self.trailer();
        let c = crc32fast::hash(&self.0[t..t + 52]);
        self.wr32(t + 52, c);
        self
    }
    /// Recomputes the directory CRC (if the trailer still locates it) and the trailer CRC.
    fn fix(&mut self) -> &mut Self {
        let t = self.trailer();
        let (d, l) = (self.dir(), self.rd64(t + 8) as usize);
        if d.checked_add(l) == Some(t) {
            let c = crc32fast::hash(&self.0[d..t]);
            self.wr32(t + 16, c);
        }
        self.fix_trailer()
    }
    fn open(&self) -> tenpak::Result<TpkFile> {
        open(&self.0)
    }
}

#[test]
fn base_file_is_valid() {
    let f = Tpk::new().open().expect("base opens");
    f.verify().expect("base verifies");
    assert_eq!(f.tensor_count(), 2);
    assert_eq!(f.sections().len(), 5);
    // The helpers find what the writer wrote.
    let t = Tpk::new();
    assert_eq!(t.rd64(t.section(4) + 8), 6);
    assert_eq!(&t.0[t.strings()..t.strings() + 4], b"t0t1");
}

// ---- header ---------------------------------------------------------------------------

#[test]
fn truncated() {
    let b = base();
    for n in [0, 1, 8, 63, 64, 127] {
        assert_err!(open(&b[..n]), Error::Truncated { len, .. } if len == n as u64);
    }
    // The same through the file-mapping path.
    let dir = tempfile::tempdir().expect("temporary folder");
    let p = dir.path().join("short.tpk");
    std::fs::write(&p, &b[..100]).expect("write");
    assert_err!(TpkFile::open(&p), Error::Truncated { len: 100, .. });
    // Cut in the middle: the trailer is not where it must be.
    assert_err!(open(&b[..b.len() - 1]), Error::BadTrailer);
    assert_err!(open(&b[..b.len() / 2]), Error::BadTrailer);
}

#[test]
fn bad_magic() {
    let mut t = Tpk::new();
    t.0[..8].copy_from_slice(b"GGUF\x03\0\0\0");
    assert_err!(t.open(), Error::BadMagic { found } if &found == b"GGUF\x03\0\0\0");
    for magic in [[0u8; 8], *b"PK\x03\x04\x14\0\0\0", *b"\x08\0\0\0\0\0\0\0"] {
        let mut t = Tpk::new();
        t.0[..8].copy_from_slice(&magic);
        assert_err!(t.open(), Error::BadMagic { found } if found == magic);
    }
    // A corrupt first byte is not a text-mode transfer's damage.
    for first in [0x88u8, 0x00, 0xff, b'x'] {
        let mut t = Tpk::new();
        t.0[0] = first;
        assert_err!(t.open(), Error::BadMagic { found } if found[0] == first);
    }
}

#[test]
fn text_mode_mangled() {
    let b = base();
    // DOS -> Unix: every CR LF becomes LF.
    let mut unix = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        unix.push(b[i]);
        i += 1;
    }
    assert!(unix.len() < b.len());
    assert_err!(open(&unix), Error::TextModeMangled);
    // Unix -> DOS: every LF becomes CR LF.
    let dos: Vec<u8> = b
        .iter()
        .flat_map(|&c| {
            if c == b'\n' {
                vec![b'\r', b'\n']
            } else {
                vec![c]
            }
        })
        .collect();
    assert_err!(open(&dos), Error::TextModeMangled);
    // A 7-bit channel clears the high bit of the first byte.
    let mut seven = b.clone();
    seven[0] &= 0x7f;
    assert_err!(open(&seven), Error::TextModeMangled);
}

#[test]
fn unknown_major() {
    for major in [0u16, 2, 0xffff] {
        let mut t = Tpk::new();
        t.wr16(8, major);
        t.fix_header();
        assert_err!(t.open(), Error::UnsupportedVersion { major: m, supported: 1, .. } if m == major);
        // Checked before the header CRC, whose position a new major may move.
        let mut t = Tpk::new();
        t.wr16(8, major);
        assert_err!(t.open(), Error::UnsupportedVersion { .. });
    }
}

#[test]
fn unknown_required_flags() {
    for bit in 16..32 {
        let mut t = Tpk::new();
        t.wr32(12, 1 << bit);
        t.fix_header();
        assert_err!(t.open(), Error::UnknownRequiredFlags { flags } if flags == 1 << bit);
    }
    // Optional bits are ignored.
    let mut t = Tpk::new();
    t.wr32(12, 0xffff);
    t.fix_header();
    assert_eq!(
        t.open().expect("optional flags are ignored").flags(),
        0xffff
    );
}

#[test]
fn header_len_out_of_range() {
    for hl in [0u32, 63, 1 << 30] {
        let mut t = Tpk::new();
        t.wr32(16, hl);
        t.fix_header();
        assert_err!(t.open(), Error::DirectoryLayout(_));
    }
    // A longer header must not reach into the first section (at 64).
    let mut t = Tpk::new();
    t.wr32(16, 128);
    t.fix_header();
    assert_err!(t.open(), Error::SectionOutOfBounds { section: 0, .. });
}

// ---- checksums ------------------------------------------------------------------------

#[test]
fn header_checksum() {
    for at in [8, 12, 20, 59, 60, 63] {
        let mut t = Tpk::new();
        if at == 8 {
            t.0[10] ^= 1; // the minor version (the major is checked before the CRC)
        } else {
            t.0[at] ^= 0x10;
        }
        assert_err!(t.open(), Error::ChecksumMismatch { what: "header", .. });
    }
}

#[test]
fn trailer_checksum() {
    for off in [0, 8, 16, 20, 24, 51, 52, 55] {
        let mut t = Tpk::new();
        let at = t.trailer() + off;
        t.0[at] ^= 0x04;
        assert_err!(
            t.open(),
            Error::ChecksumMismatch {
                what: "trailer",
                ..
            }
        );
    }
}

#[test]
fn directory_checksum() {
    let t0 = Tpk::new();
    let (d, e) = (t0.dir(), t0.trailer());
    for at in [d, d + 1, (d + e) / 2, e - 1] {
        let mut t = Tpk::new();
        t.0[at] ^= 0x80;
        assert_err!(
            t.open(),
            Error::ChecksumMismatch {
                what: "directory",
                ..
            }
        );
    }
}

// ---- trailer and directory position -----------------------------------------------------

#[test]
fn bad_trailer() {
    let mut t = Tpk::new();
    let n = t.0.len();
    t.0[n - 1] = b'X';
    assert_err!(t.open(), Error::BadTrailer);
    let mut b = base();
    b.push(0);
    assert_err!(open(&b), Error::BadTrailer);
    let mut b = base();
    b.extend_from_slice(&[0; 64]);
    assert_err!(open(&b), Error::BadTrailer);
}

#[test]
fn trailer_version_differs() {
    let mut t = Tpk::new();
    let at = t.trailer() + 22;
    t.wr16(at, 1);
    t.fix_trailer();
    assert_err!(t.open(), Error::DirectoryLayout(m) if m.contains("version"));
}

#[test]
fn directory_out_of_bounds() {
    let base = Tpk::new();
    let (d, tr) = (base.dir() as u64, base.trailer());
    let dl = base.rd64(tr + 8);
    for (off, len) in [
        (d + 1, dl),
        (d - 64, dl),
        (d, dl + 1),
        (0, dl),
        (32, tr as u64 - 32),
        (d + dl, 0),
        (u64::MAX - 10, dl),
        (d, dl - 8),
        (tr as u64 - 32, 32),
    ] {
        let mut t = Tpk::new();
        t.wr64(tr, off);
        t.wr64(tr + 8, len);
        t.fix_trailer();
        assert_err!(
            t.open(),
            Error::DirectoryOutOfBounds { offset, len: l, .. } if offset == off && l == len
        );
    }
}

#[test]
fn directory_size_limit() {
    let mut t = Tpk::new();
    let tr = t.trailer();
    t.wr64(tr + 8, (256 << 20) + 1);
    t.fix_trailer();
    assert_err!(
        t.open(),
        Error::LimitExceeded { what: "directory size", value, .. } if value == (256 << 20) + 1
    );
}

#[test]
fn directory_layout() {
    // Each table offset pushed past the directory's end, or into the directory header.
    for field in [16usize, 20, 24, 32, 40, 48] {
        for v in [u32::MAX, 4000, 0, 63] {
            let mut t = Tpk::new();
            let at = t.dh(field);
            t.wr32(at, v);
            t.fix();
            assert_err!(t.open(), Error::DirectoryLayout(m) if m.contains("outside"));
        }
    }
    // Counts that make a table run past the end.
    for field in [28usize, 36, 44, 52] {
        let mut t = Tpk::new();
        let at = t.dh(field);
        t.wr32(at, 100_000);
        t.fix();
        assert_err!(t.open(), Error::DirectoryLayout(m) if m.contains("outside"));
    }
    // Strides below the minimum.
    for (field, v) in [(4usize, 63u32), (4, 0), (12, 31), (12, 0)] {
        let mut t = Tpk::new();
        let at = t.dh(field);
        t.wr32(at, v);
        t.fix();
        assert_err!(t.open(), Error::DirectoryLayout(m) if m.contains("strides"));
    }
    // The metadata index out of range, or naming a section of another kind.
    let mut t = Tpk::new();
    let at = t.dh(56);
    t.wr32(at, 5);
    t.fix();
    assert_err!(t.open(), Error::DirectoryLayout(m) if m.contains("metadata"));
    let mut t = Tpk::new();
    let at = t.dh(56);
    t.wr32(at, 4);
    t.fix();
    assert_err!(t.open(), Error::DirectoryLayout(m) if m.contains("metadata"));
}

// ---- limits -------------------------------------------------------------------------------

#[test]
fn limits_exceeded() {
    let cases: [(&str, usize, u32); 2] = [
        ("tensor count", 0, (1 << 20) + 1),
        ("section count", 8, (1 << 22) + 1),
    ];
    for (what, field, v) in cases {
        let mut t = Tpk::new();
        let at = t.dh(field);
        t.wr32(at, v);
        t.fix();
        assert_err!(t.open(), Error::LimitExceeded { what: w, value, .. } if w == what && value == u64::from(v));
    }
    // Per-tensor fields of tensor 0.
    let cases: [(&str, usize, u32); 5] = [
        ("tensor name length", 4, 1025),
        ("tensor name length", 4, 0),
        ("tensor rank", 12, 9),
        ("sections of one tensor", 20, 65),
        ("codec parameter length", 28, 4097),
    ];
    for (what, field, v) in cases {
        let mut t = Tpk::new();
        let at = t.tensor(0) + field;
        t.wr32(at, v);
        t.fix();
        assert_err!(t.open(), Error::LimitExceeded { what: w, value, .. } if w == what && value == u64::from(v));
    }
}

#[test]
fn metadata_size_limit() {
    // A 64 MiB + 1 metadata section: the writer refuses it, so mark a big section as it.
    let big = vec![b' '; (64 << 20) + 1];
    let b = build(|w| {
        w.add_section(SectionKind::Metadata, ElemType::U8, &big)?;
        Ok(())
    });
    let mut t = Tpk(b);
    let at = t.dh(56);
    t.wr32(at, 0);
    t.fix();
    assert_err!(
        t.open(),
        Error::LimitExceeded {
            what: "metadata size",
            ..
        }
    );
}

// ---- sections -------------------------------------------------------------------------

#[test]
fn section_out_of_bounds() {
    let t0 = Tpk::new();
    let d = t0.dir() as u64;
    let file_len = t0.0.len() as u64;
    // (section, offset, length)
    for (i, off, len) in [
        (4usize, file_len.next_multiple_of(64) + 64, 6u64), // past EOF
        (4, d, 64),                                         // into the directory
        (4, d - 64, 65),                                    // one byte into it
        (4, 1 << 62, u64::MAX - 10),                        // offset + length overflows
        (0, 0, 10),                                         // before header_len
    ] {
        let mut t = Tpk::new();
        let r = t.section(i);
        t.wr64(r, off);
        t.wr64(r + 8, len);
        t.fix();
        assert_err!(
            t.open(),
            Error::SectionOutOfBounds { section, offset, .. } if section == i as u32 && offset == off
        );
    }
}

#[test]
fn section_overlap() {
    let mut t = Tpk::new();
    let (r1, r2) = (t.section(1), t.section(2));
    let off1 = t.rd64(r1);
    t.wr64(r2, off1);
    t.fix();
    assert_err!(
        t.open(),
        Error::SectionOverlap { section: 2, previous: 1, offset, .. } if offset == off1
    );
    // Out of order, even without sharing bytes.
    let mut t = Tpk::new();
    let r4 = t.section(4);
    t.wr64(r4, 64);
    t.wr64(r4 + 8, 0);
    t.fix();
    assert_err!(t.open(), Error::SectionOverlap { section: 4, .. });
}

#[test]
fn zero_length_sections_may_touch() {
    // Two zero-length sections at the same aligned offset do not overlap.
    let b = build(|w| {
        w.add_section(SectionKind::Aux, ElemType::U8, &[])?;
        w.add_section(SectionKind::Aux, ElemType::U8, &[])?;
        Ok(())
    });
    let f = open(&b).expect("zero-length sections are allowed");
    let offs: Vec<u64> = f.sections().map(|s| s.info().offset).collect();
    assert_eq!(offs, [64, 64]);
}

#[test]
fn section_misaligned() {
    for delta in [1u64, 8, 32, 63] {
        let mut t = Tpk::new();
        let r = t.section(4);
        let off = t.rd64(r) + delta;
        t.wr64(r, off);
        t.fix();
        assert_err!(t.open(), Error::SectionMisaligned { section: 4, offset } if offset == off);
    }
}

#[test]
fn section_elem_mismatch() {
    // An f16 section of odd length; an f32 one of 6 bytes.
    let mut t = Tpk::new();
    let r = t.section(4);
    t.wr64(r + 8, 5);
    t.fix();
    assert_err!(
        t.open(),
        Error::SectionElemMismatch {
            section: 4,
            len: 5,
            elem_size: 2
        }
    );
    let mut t = Tpk::new();
    let r = t.section(4);
    t.0[r + 21] = ElemType::F32.code();
    t.fix();
    assert_err!(
        t.open(),
        Error::SectionElemMismatch {
            section: 4,
            len: 6,
            elem_size: 4
        }
    );
}

#[test]
fn unknown_codes_in_a_1_0_file() {
    for kind in [0u8, 12, 255] {
        let mut t = Tpk::new();
        let r = t.section(1);
        t.0[r + 20] = kind;
        t.fix();
        assert_err!(t.open(), Error::UnknownCode { what: "section kind", value } if value == u32::from(kind));
    }
    for elem in [0u8, 10, 16, 25, 255] {
        let mut t = Tpk::new();
        let r = t.section(1);
        t.0[r + 21] = elem;
        t.fix();
        assert_err!(t.open(), Error::UnknownCode { what: "element type", value } if value == u32::from(elem));
    }
    for codec in [0u16, 2, 0xffff] {
        let mut t = Tpk::new();
        let r = t.tensor(1);
        t.wr16(r + 32, codec);
        t.fix();
        assert_err!(t.open(), Error::UnknownCode { what: "codec", value } if value == u32::from(codec));
    }
    for dtype in [0u8, 4, 255] {
        let mut t = Tpk::new();
        let r = t.tensor(1);
        t.0[r + 34] = dtype;
        t.fix();
        assert_err!(t.open(), Error::UnknownCode { what: "source dtype", value } if value == u32::from(dtype));
    }
}

#[test]
fn unknown_codes_in_a_newer_minor_are_skipped() {
    let mut t = Tpk::new();
    t.wr16(10, 1);
    t.fix_header();
    let tr = t.trailer();
    t.wr16(tr + 22, 1);
    let (s1, t1) = (t.section(1), t.tensor(1));
    t.0[s1 + 21] = 99; // unknown element type on one of t0's sections
    t.wr16(t1 + 32, 77); // unknown codec on t1
    t.0[t1 + 34] = 200; // unknown dtype on t1
    t.fix();
    // t0's sections no longer match its codec (a known codec is still validated).
    assert_err!(t.open(), Error::SectionMismatch { section: 1, .. });
    t.0[s1 + 21] = ElemType::Packed4.code();
    t.fix();
    let f = t.open().expect("a 1.1 file with unknown codes opens");
    let t1 = f.tensor("t1").expect("t1");
    assert_eq!(t1.codec(), CodecId::Other(77));
    assert_eq!(t1.source_dtype(), Dtype::Other(200));
}

// ---- tensors ----------------------------------------------------------------------------

#[test]
fn shape_overflow() {
    // t0 has dims [2, 10] at dims[0..2].
    for (a, b) in [
        (1u64 << 32, 1u64 << 32),
        (1 << 48, 2),
        (u64::MAX, 2),
        (1 << 47, 3),
    ] {
        let mut t = Tpk::new();
        let d = t.dims();
        t.wr64(d, a);
        t.wr64(d + 8, b);
        t.fix();
        assert_err!(t.open(), Error::ShapeOverflow { tensor, shape } if tensor == "t0" && shape == [a, b]);
    }
}

#[test]
fn duplicate_name() {
    let mut t = Tpk::new();
    let r = t.tensor(1);
    t.wr32(r, 0); // t1's name now points at "t0"
    t.fix();
    assert_err!(t.open(), Error::DuplicateName(n) if n == "t0");
}

#[test]
fn name_not_utf8() {
    for bad in [0xffu8, 0x80, 0xc0] {
        let mut t = Tpk::new();
        let s = t.strings();
        t.0[s + 3] = bad; // second byte of "t1"
        t.fix();
        assert_err!(t.open(), Error::NameNotUtf8 { index: 1 });
    }
}

#[test]
fn tensor_ref_out_of_bounds() {
    // (tensor record field, value, what)
    let cases: [(usize, u32, &str); 7] = [
        (0, 3, "name"),               // name_off: "t1" would run past the 4-byte table
        (0, u32::MAX, "name"),        //
        (8, 4, "dimensions"),         // dims_first of t0 (rank 2, 3 dims)
        (8, u32::MAX, "dimensions"),  //
        (16, 2, "section list"),      // refs_first of t0 (3 refs, 4 entries)
        (24, 21, "codec parameters"), // params_off of t0 (its params are 20 of 40 bytes)
        (24, u32::MAX, "codec parameters"),
    ];
    for (field, v, what) in cases {
        let mut t = Tpk::new();
        let r = t.tensor(0);
        t.wr32(r + field, v);
        t.fix();
        assert_err!(t.open(), Error::TensorRefOutOfBounds { index: 0, what: w } if w == what);
    }
    // A reference to a section that does not exist, or to the metadata section.
    for v in [5u32, u32::MAX, 0] {
        let mut t = Tpk::new();
        let refs = t.refs();
        t.wr32(refs + 12, v); // t1's only reference
        t.fix();
        assert_err!(
            t.open(),
            Error::TensorRefOutOfBounds {
                index: 1,
                what: "section"
            }
        );
    }
}

#[test]
fn metadata_reference_may_be_absent() {
    let mut t = Tpk::new();
    let at = t.dh(56);
    t.wr32(at, NO_SECTION);
    t.fix();
    let f = t.open().expect("metadata is optional");
    assert!(f.metadata().expect("no metadata").is_null());
    assert_eq!(f.section_owner(0), "unused");
}

// ---- the staged codec ---------------------------------------------------------------------

/// Replaces t0's 20-byte parameter header (one stage) with `p`, which must be 20 bytes.
fn with_params(p: &[u8]) -> Tpk {
    let mut t = Tpk::new();
    let at = t.params();
    assert_eq!(p.len(), 20);
    t.0[at..at + 20].copy_from_slice(p);
    t.fix();
    t
}

#[test]
fn bad_codec_params() {
    let good = staged::encode_params(&[INT4]);
    let mut cases: Vec<(Vec<u8>, &str)> = vec![];
    let mut p = good.clone();
    p[0] = 0;
    cases.push((p, "stage count"));
    let mut p = good.clone();
    p[0] = 2;
    cases.push((p, "parameter header is"));
    let mut p = good.clone();
    p[0] = 9;
    cases.push((p, "stage count"));
    let mut p = good.clone();
    p[2] = 1;
    cases.push((p, "reserved"));
    let mut p = good.clone();
    p[4 + 3] = 1;
    cases.push((p, "reserved"));
    let mut p = good.clone();
    p[4 + 12] = 1;
    cases.push((p, "reserved"));
    let mut p = good.clone();
    p[4] = 5;
    cases.push((p, "unknown stage kind"));
    for bits in [0u8, 1, 9, 255] {
        let mut p = good.clone();
        p[4 + 1] = bits;
        cases.push((p, "bits"));
    }
    for group in [0u32, 4, 12, 4104, u32::MAX] {
        let mut p = good.clone();
        p[8..12].copy_from_slice(&group.to_le_bytes());
        cases.push((p, "group"));
    }
    for (params, why) in &cases {
        let t = with_params(params);
        assert_err!(
            t.open(),
            Error::BadCodecParams { tensor, reason } if tensor == "t0" && reason.contains(why),
        );
    }
    // Stage kinds other than int, on t0's [2, 10] shape.
    for (st, why) in [
        (Stage::Ggml { type_id: 2 }, "block size"),
        (Stage::Ggml { type_id: 4 }, "not supported"),
        (
            Stage::Raw {
                dtype: Dtype::Other(9),
            },
            "raw dtype",
        ),
        (
            Stage::Vq {
                dim: 17,
                k: 4,
                weighted: false,
            },
            "vq d",
        ),
        (
            Stage::Vq {
                dim: 2,
                k: 1,
                weighted: false,
            },
            "vq k",
        ),
        (
            Stage::Vq {
                dim: 2,
                k: 65537,
                weighted: false,
            },
            "vq k",
        ),
        (
            Stage::LowRank {
                rank: 0,
                weighted: false,
            },
            "rank",
        ),
        (
            Stage::LowRank {
                rank: 4097,
                weighted: false,
            },
            "rank",
        ),
    ] {
        let t = with_params(&staged::encode_params(&[st]));
        assert_err!(
            t.open(),
            Error::BadCodecParams { reason, .. } if reason.contains(why),
        );
    }
    // A valid stage list that needs a different number of sections than t0 lists.
    let t = with_params(&staged::encode_params(&[Stage::Raw { dtype: Dtype::F16 }]));
    assert_err!(t.open(), Error::BadCodecParams { reason, .. } if reason.contains("need 1 sections"));
}

#[test]
fn section_mismatch() {
    // Built with the writer (which does not check codecs): lengths off by one element.
    type Layout = Vec<(SectionKind, ElemType, usize)>;
    let cases: Vec<(Layout, u32)> = vec![
        // scales one element short
        (
            vec![
                (SectionKind::Codes, ElemType::Packed4, 16),
                (SectionKind::Scales, ElemType::F16, 6),
                (SectionKind::Offsets, ElemType::F16, 8),
            ],
            1,
        ),
        // codes one group too long
        (
            vec![
                (SectionKind::Codes, ElemType::Packed4, 20),
                (SectionKind::Scales, ElemType::F16, 8),
                (SectionKind::Offsets, ElemType::F16, 8),
            ],
            0,
        ),
        // wrong kind (scales and offsets swapped)
        (
            vec![
                (SectionKind::Codes, ElemType::Packed4, 16),
                (SectionKind::Offsets, ElemType::F16, 8),
                (SectionKind::Scales, ElemType::F16, 8),
            ],
            1,
        ),
        // wrong element type
        (
            vec![
                (SectionKind::Codes, ElemType::Packed8, 16),
                (SectionKind::Scales, ElemType::F16, 8),
                (SectionKind::Offsets, ElemType::F16, 8),
            ],
            0,
        ),
    ];
    for (secs, bad) in cases {
        let b = build(|w| {
            let ids = secs
                .iter()
                .map(|&(k, e, n)| w.add_section(k, e, &vec![0; n]))
                .collect::<tenpak::Result<Vec<_>>>()?;
            w.add_tensor(staged_entry("m", &[2, 10], &[INT4], ids))
        });
        assert_err!(
            open(&b),
            Error::SectionMismatch { tensor, section, .. } if tensor == "m" && section == bad
        );
    }
    // Patching a length in the directory of a valid file gives the same error.
    let mut t = Tpk::new();
    let r = t.section(4);
    t.wr64(r + 8, 4);
    t.fix();
    assert_err!(t.open(), Error::SectionMismatch { section: 4, .. });
}

// ---- section contents ------------------------------------------------------------------

#[test]
fn section_checksum_every_byte() {
    for with_meta in [false, true] {
        let clean = base_with(with_meta);
        let f = open(&clean).expect("base opens");
        let ranges: Vec<(u32, u64, u64, String)> = f
            .sections()
            .map(|s| {
                let i = s.index();
                (i, s.info().offset, s.info().len, f.section_owner(i))
            })
            .collect();
        let is_meta = |i: u32| f.metadata_section() == Some(i);
        let mut flips = 0;
        for (i, off, len, owner) in &ranges {
            for at in *off..off + len {
                let mut b = clean.clone();
                b[at as usize] ^= 1 << (at % 8);
                flips += 1;
                match open(&b) {
                    // Opening reads the metadata (to check UTF-8) but no other section.
                    Err(Error::Metadata(_)) if is_meta(*i) => {}
                    Err(e) => panic!("flip at {at} broke open: {e}"),
                    Ok(g) => assert_err!(
                        g.verify(),
                        Error::SectionChecksum { section, owner: o, stored, computed }
                            if section == *i && &o == owner && stored != computed
                    ),
                }
                assert_err!(
                    TpkFile::from_bytes(
                        &b,
                        OpenOptions {
                            verify_checksums: true
                        }
                    ),
                    Error::SectionChecksum { .. } | Error::Metadata(_)
                );
            }
        }
        assert!(flips > 30, "the flips cover every section byte");
        // Padding is not covered by any CRC: flipping it is harmless.
        let mut b = clean.clone();
        let last = ranges.last().expect("sections");
        b[(last.1 + last.2) as usize] ^= 0xff;
        open(&b)
            .expect("opens")
            .verify()
            .expect("padding is not checksummed");
    }
    // The owner names the tensor, or "metadata".
    let f = open(&base()).expect("base opens");
    assert_eq!(f.section_owner(0), "metadata");
    assert_eq!(f.section_owner(2), "tensor t0");
}

#[test]
fn metadata_not_utf8_or_not_json() {
    let mut t = Tpk::new();
    let r = t.section(0);
    let off = t.rd64(r) as usize;
    t.0[off + 1] = 0xff;
    assert_err!(t.open(), Error::Metadata(m) if m.contains("UTF-8"));
    // Valid UTF-8 but not JSON: opens; asking for the metadata fails.
    let mut t = Tpk::new();
    t.0[off] = b'[';
    let f = t.open().expect("UTF-8 metadata opens");
    assert!(f.metadata_str().is_some());
    assert_err!(f.metadata(), Error::Metadata(_));
}

#[test]
fn section_type() {
    let f = Tpk::new().open().expect("base opens");
    let t0 = f.tensor("t0").expect("t0");
    let codes = t0.section(0).expect("codes");
    let scales = t0.section(1).expect("scales");
    assert!(codes.as_u8().is_ok() && scales.as_f16().is_ok());
    assert_err!(
        scales.as_u8(),
        Error::SectionType {
            section: 2,
            requested: "bytes",
            ..
        }
    );
    assert_err!(
        scales.as_f32(),
        Error::SectionType {
            section: 2,
            requested: "f32",
            ..
        }
    );
    assert_err!(
        scales.as_bf16(),
        Error::SectionType {
            requested: "bf16",
            ..
        }
    );
    assert_err!(
        scales.as_u16(),
        Error::SectionType {
            requested: "u16",
            ..
        }
    );
    assert_err!(
        codes.as_f16(),
        Error::SectionType {
            section: 1,
            requested: "f16",
            ..
        }
    );
    assert_err!(
        codes.as_i8(),
        Error::SectionType {
            requested: "i8",
            ..
        }
    );
}

// ---- writer properties ---------------------------------------------------------------

#[test]
fn writer_is_deterministic() {
    let (a, b) = (base(), base());
    assert_eq!(a, b);
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("folder lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn dropped_writer_leaves_nothing() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let target = dir.path().join("out.tpk");
    {
        let mut w = TpkWriter::create(&target).expect("writer starts");
        w.add_section(SectionKind::Raw, ElemType::F32, &[0; 4096])
            .expect("section");
        assert!(
            !listing(dir.path()).is_empty(),
            "the temporary file exists while writing"
        );
        assert!(!target.exists());
    }
    assert!(
        listing(dir.path()).is_empty(),
        "left: {:?}",
        listing(dir.path())
    );
}

#[test]
fn refuses_to_overwrite_input() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let input = dir.path().join("model.safetensors");
    std::fs::write(&input, b"precious").expect("write input");
    let before = std::fs::metadata(&input).expect("metadata").modified().ok();
    // The same file under another spelling of its path.
    let other = dir.path().join(".").join("model.safetensors");
    for target in [&input, &other] {
        let r = TpkWriter::create_with(
            target,
            WriterOptions {
                protected: vec![input.clone()],
            },
        );
        assert_err!(r, Error::OverwritesInput(p) if &p == target);
    }
    #[cfg(unix)]
    {
        let link = dir.path().join("hard-link.tpk");
        std::fs::hard_link(&input, &link).expect("hard link");
        let r = TpkWriter::create_with(
            &link,
            WriterOptions {
                protected: vec![input.clone()],
            },
        );
        assert_err!(r, Error::OverwritesInput(_));
        std::fs::remove_file(&link).expect("unlink");
    }
    assert_eq!(std::fs::read(&input).expect("read"), b"precious");
    assert_eq!(
        std::fs::metadata(&input).expect("metadata").modified().ok(),
        before
    );
    assert_eq!(
        listing(dir.path()),
        ["model.safetensors"],
        "no temporary file left"
    );
}

#[test]
fn existing_target_replaced_only_at_finish() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let target = dir.path().join("out.tpk");
    std::fs::write(&target, b"old contents").expect("write");
    let mut w = TpkWriter::create(&target).expect("writer starts");
    w.add_section(SectionKind::Raw, ElemType::F16, &[0; 6])
        .expect("section");
    assert_eq!(std::fs::read(&target).expect("read"), b"old contents");
    let n = w.finish().expect("finish");
    let bytes = std::fs::read(&target).expect("read");
    assert_eq!(bytes.len() as u64, n);
    open(&bytes).expect("the new file is valid");
    assert_eq!(listing(dir.path()), ["out.tpk"]);
    // Dropping a second writer leaves the finished file as it was.
    drop(TpkWriter::create(&target).expect("writer starts"));
    assert_eq!(std::fs::read(&target).expect("read"), bytes);
}

// ---- no panics ---------------------------------------------------------------------------

/// xorshift64*: a fixed, dependency-free PRNG so the mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutates `b` (flips, interesting values, truncation, insertion) and, half of the time,
/// repairs the header, directory and trailer CRCs so the mutation reaches deeper checks.
fn mutate(rng: &mut Rng, b: &[u8]) -> Vec<u8> {
    let mut m = b.to_vec();
    for _ in 0..1 + rng.below(4) {
        if m.is_empty() {
            break;
        }
        let at = rng.below(m.len());
        match rng.below(6) {
            0 => m[at] ^= 1 << rng.below(8),
            1 => m[at] = rng.next() as u8,
            2 => {
                let v: [u8; 4] = match rng.below(5) {
                    0 => 0u32.to_le_bytes(),
                    1 => u32::MAX.to_le_bytes(),
                    2 => 0x8000_0000u32.to_le_bytes(),
                    3 => (rng.below(256) as u32).to_le_bytes(),
                    _ => 64u32.to_le_bytes(),
                };
                let end = (at + 4).min(m.len());
                m[at..end].copy_from_slice(&v[..end - at]);
            }
            3 => m.truncate(at),
            4 => m.insert(at, rng.next() as u8),
            _ => {
                let n = rng.below(64).min(m.len() - at);
                m.drain(at..at + n);
            }
        }
    }
    if rng.below(2) == 0 && m.len() >= 128 {
        let mut t = Tpk(m);
        t.fix_header();
        let tr = t.trailer();
        let dl = t.rd64(tr + 8) as usize;
        if let Some(d) = t
            .dir()
            .checked_add(dl)
            .filter(|&e| e == tr)
            .map(|_| t.dir())
        {
            let c = crc32fast::hash(&t.0[d..tr]);
            t.wr32(tr + 16, c);
        }
        t.fix_trailer();
        m = t.0;
    }
    m
}

#[test]
fn mutations_never_panic() {
    let mut seeds = vec![base(), base_with(false)];
    // The spec's vectors add a newer minor version, shared sections and other stages.
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/vectors");
    for name in ["minor11", "vq_shared", "int8sym_f16", "raw_f32", "empty"] {
        let p = vectors.join(format!("{name}.tpk"));
        seeds.push(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut opened = 0;
    // TENPAK_MUTATIONS=n runs a longer campaign; the default keeps `cargo test` quick.
    let n: usize = std::env::var("TENPAK_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    for i in 0..n {
        let m = mutate(&mut rng, &seeds[i % seeds.len()]);
        if open(&m).is_ok() {
            opened += 1;
        }
        tenpak::format::fuzz_open(&m);
    }
    // Some mutants must pass validation, or the property only exercises the first checks.
    eprintln!("{opened} of {n} mutants opened");
    assert!(opened > 100, "only {opened} mutants opened");
}

#[test]
fn io_error_names_the_path() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let p = dir.path().join("missing.tpk");
    assert_err!(TpkFile::open(&p), Error::Io { path, .. } if path == p);
}

#[test]
fn writer_rejects_what_the_reader_would() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut w = TpkWriter::create(dir.path().join("w.tpk")).expect("writer starts");
    w.set_metadata(&json!({})).expect("metadata");
    assert_err!(w.set_metadata(&json!({})), Error::InvalidArgument(_));
    assert_err!(
        w.add_section(SectionKind::Other(99), ElemType::U8, &[]),
        Error::InvalidArgument(_)
    );
    assert_err!(
        w.add_section(SectionKind::Raw, ElemType::Other(99), &[]),
        Error::InvalidArgument(_)
    );
    assert_err!(
        w.add_section(SectionKind::Raw, ElemType::F32, &[0; 6]),
        Error::InvalidArgument(_)
    );
    let s = w
        .add_section(SectionKind::Raw, ElemType::F32, &[0; 4])
        .expect("section");
    let e = |name: &str, shape: &[u64]| {
        staged_entry(name, shape, &[Stage::Raw { dtype: Dtype::F32 }], vec![s])
    };
    assert_err!(w.add_tensor(e("", &[1])), Error::InvalidArgument(_));
    assert_err!(
        w.add_tensor(e(&"n".repeat(1025), &[1])),
        Error::InvalidArgument(_)
    );
    assert_err!(w.add_tensor(e("r", &[1; 9])), Error::InvalidArgument(_));
    assert_err!(
        w.add_tensor(e("o", &[1 << 32, 1 << 32])),
        Error::ShapeOverflow { .. }
    );
    let mut bad = e("m", &[1]);
    bad.sections = vec![tenpak::format::SectionId::clone(&s); 65];
    assert_err!(w.add_tensor(bad), Error::InvalidArgument(_));
    w.add_tensor(e("ok", &[1])).expect("a valid tensor");
    assert_err!(w.add_tensor(e("ok", &[1])), Error::DuplicateName(n) if n == "ok");
    let mut p = e("p", &[1]);
    p.params = vec![0; 4097];
    assert_err!(w.add_tensor(p), Error::InvalidArgument(_));
    w.finish()
        .expect("the rejected calls left the writer usable");
    open(&std::fs::read(dir.path().join("w.tpk")).expect("read")).expect("valid file");
}
