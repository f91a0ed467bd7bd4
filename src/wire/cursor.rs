//! [`Cursor`]: a bounded, zero-copy reader over a shared frame, with octez data-encoding's
//! size combinators (`dynamic_size`, `check_size`, bounded lists) checked before anything is
//! allocated, and the byte offset of the first failure for error messages.

use bytes::Bytes;

use super::DecodeError;

/// Reads a frame front to back. Every read checks the bytes left in the current region (the
/// frame, or a `dynamic_size` / `check_size` region inside it) before returning anything, and
/// a failed read does not advance, so [`Cursor::position`] after an error is where the failing
/// field starts.
///
/// Variable-size payloads come back as [`Bytes`] slices of the frame (no copy).
pub struct Cursor<'a> {
    frame: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over the whole of `frame`.
    pub fn new(frame: &'a Bytes) -> Self {
        Self { frame, pos: 0, end: frame.len() }
    }

    /// Bytes read so far from the start of the frame.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left in the current region.
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Takes the next `n` bytes as a borrowed slice.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::NotEnoughData { field, needed: n, available: self.remaining() });
        }
        let frame: &'a [u8] = self.frame;
        let s = &frame[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Takes the next `n` bytes as a shared slice of the frame.
    pub fn bytes(&mut self, field: &'static str, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(field, n)?;
        Ok(self.frame.slice(start..start + n))
    }

    /// Takes everything left in the current region (octez `Variable.bytes`).
    pub fn rest(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        self.bytes(field, self.remaining())
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(field, N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// A `uint8`.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// An `int8`.
    pub fn i8(&mut self, field: &'static str) -> Result<i8, DecodeError> {
        Ok(i8::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `uint16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `int32`.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `uint32`, as the length prefixes of `dynamic_size` are.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `int64`.
    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// octez `bool`: `0x00` or `0xff`.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0x00 => Ok(false),
            0xff => Ok(true),
            other => {
                self.pos -= 1;
                Err(DecodeError::Invalid { what: field, reason: format!("{other:#04x} is not a boolean") })
            }
        }
    }

    /// Reads a `u32be` length (refused if over `max`, or over what is left, before anything
    /// else), then runs `f` on exactly that many bytes, which it must consume entirely
    /// (octez `dynamic_size`).
    pub fn dynamic<T>(
        &mut self,
        field: &'static str,
        max: usize,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let start = self.pos;
        let len = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        if len > max {
            self.pos = start;
            return Err(DecodeError::SizeLimit { what: field, size: len, max });
        }
        if len > self.remaining() {
            self.pos = start;
            // Counted from the length prefix, where the cursor stands again.
            let available = self.remaining();
            return Err(DecodeError::NotEnoughData { field, needed: len.saturating_add(4), available });
        }
        let outer_end = self.end;
        self.end = self.pos + len;
        let r = f(self);
        let left = self.remaining();
        self.end = outer_end;
        let v = r?;
        if left > 0 {
            return Err(DecodeError::ExtraBytes { what: field, count: left });
        }
        Ok(v)
    }

    /// octez `check_size max` around a self-delimiting encoding: `f` may read at most `max`
    /// bytes; reading past that is a `SizeLimit` error on `what`, whatever the value claims.
    pub fn limited<T>(
        &mut self,
        what: &'static str,
        max: usize,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let (start, outer_end) = (self.pos, self.end);
        let limit_end = self.pos.saturating_add(max).min(outer_end);
        self.end = limit_end;
        let r = f(self);
        self.end = outer_end;
        match r {
            // The value needs bytes beyond the budget that the region has: over the bound.
            Err(DecodeError::NotEnoughData { needed, .. }) if self.pos.saturating_add(needed) <= outer_end => {
                Err(DecodeError::SizeLimit { what, size: self.pos - start + needed, max })
            }
            r => r,
        }
    }

    /// octez `check_size max` around an encoding that runs to the end of its region (a
    /// `Variable` one): refused at once if more than `max` bytes are left.
    pub fn bounded_rest<T>(
        &mut self,
        what: &'static str,
        max: usize,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        if self.remaining() > max {
            return Err(DecodeError::SizeLimit { what, size: self.remaining(), max });
        }
        f(self)
    }

    /// Runs `f` on the rest of the current region until it is empty, collecting at most
    /// `max_length` values (octez `Variable.list ?max_length`). The vector only grows with
    /// values actually decoded, never from a claimed count.
    pub fn list_to_end<T>(
        &mut self,
        what: &'static str,
        max_length: Option<usize>,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let mut out = Vec::new();
        while self.remaining() > 0 {
            if max_length.is_some_and(|m| out.len() >= m) {
                return Err(DecodeError::TooManyElements { what, max: max_length.unwrap_or(0) });
            }
            out.push(f(self)?);
        }
        Ok(out)
    }

    /// A list of fixed-size items to the end of the region: its length is known from the byte
    /// count, so the bound is checked before the vector is allocated.
    pub fn fixed_list_to_end<T, const N: usize>(
        &mut self,
        what: &'static str,
        max_length: Option<usize>,
        f: impl Fn([u8; N]) -> T,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.remaining() / N;
        if let Some(max) = max_length {
            if count > max || (count == max && !self.remaining().is_multiple_of(N)) {
                // Position at the first element beyond the bound.
                self.pos += max * N;
                return Err(DecodeError::TooManyElements { what, max });
            }
        }
        if !self.remaining().is_multiple_of(N) {
            self.pos += count * N;
            return Err(DecodeError::NotEnoughData { field: what, needed: N, available: self.remaining() });
        }
        let all = self.take(what, count * N)?;
        // One bounds check for the whole list, then plain copies (no per-element checks).
        Ok(all.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))).collect())
    }

    /// Fails with `ExtraBytes` unless the current region was consumed entirely.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::ExtraBytes { what, count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_regions_check_the_claim_before_reading() {
        let frame = Bytes::from_static(&[0, 0, 0, 2, 7, 8, 9]);
        let mut c = Cursor::new(&frame);
        let v = c.dynamic("x", 10, |c| c.rest("body")).unwrap();
        assert_eq!(&v[..], &[7, 8]);
        assert_eq!(c.position(), 6);
        let mut c = Cursor::new(&frame);
        assert!(matches!(c.dynamic("x", 1, |c| c.rest("body")), Err(DecodeError::SizeLimit { size: 2, max: 1, .. })));
        assert_eq!(c.position(), 0, "a failed read does not advance");
        let huge = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 1]);
        let mut c = Cursor::new(&huge);
        assert!(matches!(c.dynamic("x", usize::MAX, |c| c.rest("b")), Err(DecodeError::NotEnoughData { .. })));
        let mut c = Cursor::new(&frame);
        assert!(matches!(c.dynamic("x", 10, |c| c.u8("one")), Err(DecodeError::ExtraBytes { count: 1, .. })));
    }

    #[test]
    fn limited_regions_turn_overruns_into_size_limits() {
        // A 4-byte length claiming 8 bytes inside a 6-byte budget.
        let frame = Bytes::from_static(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        let mut c = Cursor::new(&frame);
        let r = c.limited("budget", 6, |c| c.dynamic("inner", usize::MAX, |c| c.rest("b")));
        assert!(matches!(r, Err(DecodeError::SizeLimit { what: "budget", max: 6, .. })));
        let mut c = Cursor::new(&frame);
        assert_eq!(c.limited("budget", 12, |c| c.dynamic("inner", 100, |c| c.rest("b"))).unwrap().len(), 8);
        // A real shortage (not caused by the budget) stays a shortage.
        let short = Bytes::from_static(&[0, 0, 0, 8, 1]);
        let mut c = Cursor::new(&short);
        let r = c.limited("budget", 100, |c| c.dynamic("inner", 100, |c| c.rest("b")));
        assert!(matches!(r, Err(DecodeError::NotEnoughData { .. })));
    }

    #[test]
    fn fixed_lists_are_bounded_before_allocation() {
        let frame = Bytes::from(vec![1u8; 32 * 11]);
        let mut c = Cursor::new(&frame);
        assert!(matches!(
            c.fixed_list_to_end::<_, 32>("hashes", Some(10), |a| a),
            Err(DecodeError::TooManyElements { max: 10, .. })
        ));
        assert_eq!(c.position(), 320);
        let mut c = Cursor::new(&frame);
        assert_eq!(c.fixed_list_to_end::<_, 32>("hashes", None, |a| a).unwrap().len(), 11);
        let odd = Bytes::from(vec![1u8; 33]);
        let mut c = Cursor::new(&odd);
        assert!(matches!(c.fixed_list_to_end::<_, 32>("hashes", None, |a| a), Err(DecodeError::NotEnoughData { .. })));
    }
}
