//! Reading MySQL's GTID set text: a recursive-descent parser over characters, so that
//! every refusal names the character position and what was expected there. Produces the
//! normal form `GtidSet` keeps; printing and the set algebra are in `gtid`.

use super::{GtidSet, Interval, MAX_GNO, normalise};

/// Why a GTID set text was refused. `position` is the 0-based character offset of the
/// offending character (the input's length when the text ended too early).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid GTID set at character {position}: {problem} (in {excerpt:?})")]
pub struct GtidParseError {
    pub position: usize,
    pub problem: GtidProblem,
    /// Up to 24 characters of the input starting at `position`, to show the user.
    pub excerpt: String,
}

/// What was wrong at [`GtidParseError::position`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidProblem {
    #[error("expected a server UUID (8-4-4-4-12 hexadecimal digits)")]
    ExpectedUuid,
    #[error("expected a transaction number after ':'")]
    ExpectedNumber,
    #[error("transaction number 0 is not allowed (GNOs start at 1)")]
    ZeroGno,
    #[error("transaction number exceeds the maximum {MAX_GNO}")]
    GnoTooLarge,
    #[error("interval end {end} is before its start {start}")]
    ReversedInterval { start: u64, end: u64 },
    #[error("expected a GTID tag: 1 to 32 letters, digits or '_', starting with a letter or '_'")]
    InvalidTag,
    #[error("expected ':', ',' or the end of the set")]
    UnexpectedCharacter,
}

/// A hand-written recursive-descent parser over characters, so that errors can name the
/// character position.
pub(super) struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Parser {
            text,
            chars: text.chars().collect(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error_at(&self, position: usize, problem: GtidProblem) -> GtidParseError {
        let excerpt: String = self.text.chars().skip(position).take(24).collect();
        GtidParseError {
            position,
            problem,
            excerpt,
        }
    }

    pub(super) fn parse(mut self) -> Result<GtidSet, GtidParseError> {
        let mut set = GtidSet::default();
        loop {
            // MySQL allows empty entries: ",,", leading and trailing commas.
            self.skip_whitespace();
            while self.peek() == Some(',') {
                self.pos += 1;
                self.skip_whitespace();
            }
            if self.peek().is_none() {
                return Ok(set);
            }
            let uuid = self.parse_uuid()?;
            self.skip_whitespace();
            // MySQL 8.4 (manual 19.1.3.1, "GTID Format and Storage"): after the UUID come
            // intervals and tags in any order, `uuid:1-5:tag:1-3:7`; each tag applies to
            // the intervals after it, and a tagged GTID `uuid:tag:n` is a different
            // transaction from the untagged `uuid:n`. Tags are kept as `uuid:tag` keys.
            let mut key = uuid.clone();
            let mut entries: Vec<(String, Interval)> = Vec::new();
            while self.peek() == Some(':') {
                self.pos += 1;
                self.skip_whitespace();
                if self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                {
                    let tag = self.parse_tag()?;
                    self.skip_whitespace();
                    key = format!("{uuid}:{tag}");
                    continue;
                }
                let start_pos = self.pos;
                let start = self.parse_gno()?;
                self.skip_whitespace();
                let end = if self.peek() == Some('-') {
                    self.pos += 1;
                    self.skip_whitespace();
                    let end = self.parse_gno()?;
                    self.skip_whitespace();
                    end
                } else {
                    start
                };
                if end < start {
                    return Err(
                        self.error_at(start_pos, GtidProblem::ReversedInterval { start, end })
                    );
                }
                entries.push((key.clone(), Interval { start, end }));
            }
            match self.peek() {
                None | Some(',') => {}
                Some(_) => return Err(self.error_at(self.pos, GtidProblem::UnexpectedCharacter)),
            }
            // MySQL accepts a bare UUID (or a tag without intervals) and adds nothing.
            for (key, interval) in entries {
                let entry = set.sets.entry(key).or_default();
                entry.push(interval);
                normalise(entry);
            }
        }
    }

    /// A GTID tag (MySQL 8.4, `gtid_next` = `UUID:TAG:NUMBER`): up to 32 characters,
    /// letters, digits and underscores, not starting with a digit; case-insensitive, so
    /// kept lower-case as the server prints it.
    fn parse_tag(&mut self) -> Result<String, GtidParseError> {
        const MAX_TAG: usize = 32;
        let start = self.pos;
        let mut tag = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            tag.push(c.to_ascii_lowercase());
            self.pos += 1;
        }
        if tag.is_empty() || tag.len() > MAX_TAG || tag.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(self.error_at(start, GtidProblem::InvalidTag));
        }
        Ok(tag)
    }

    fn parse_uuid(&mut self) -> Result<String, GtidParseError> {
        const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
        let start = self.pos;
        let mut uuid = String::with_capacity(36);
        for (index, &len) in GROUPS.iter().enumerate() {
            if index > 0 {
                if self.peek() != Some('-') {
                    return Err(self.error_at(self.pos, GtidProblem::ExpectedUuid));
                }
                uuid.push('-');
                self.pos += 1;
            }
            for _ in 0..len {
                match self.peek() {
                    Some(c) if c.is_ascii_hexdigit() => {
                        uuid.push(c.to_ascii_lowercase());
                        self.pos += 1;
                    }
                    _ => return Err(self.error_at(self.pos, GtidProblem::ExpectedUuid)),
                }
            }
        }
        // "aaaaaaaa-...-aaaaaaaaaaaaa" (a 13th digit) is not a UUID either.
        if self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            return Err(self.error_at(start, GtidProblem::ExpectedUuid));
        }
        Ok(uuid)
    }

    fn parse_gno(&mut self) -> Result<u64, GtidParseError> {
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(digit) = self.peek().and_then(|c| c.to_digit(10)) {
            value = match value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(digit)))
            {
                Some(v) if v <= MAX_GNO => v,
                _ => return Err(self.error_at(start, GtidProblem::GnoTooLarge)),
            };
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error_at(start, GtidProblem::ExpectedNumber));
        }
        if value == 0 {
            return Err(self.error_at(start, GtidProblem::ZeroGno));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "61553741-443a-11f1-8f2e-0242ac120002";

    fn set(text: &str) -> GtidSet {
        GtidSet::parse(text).unwrap()
    }

    #[test]
    fn parses_what_mysql_prints_and_prints_it_back() {
        let text = format!("{A}:1-5:11-18,\n{B}:1-3");
        let parsed = set(&text);
        assert_eq!(parsed.to_string(), text);
        assert_eq!(
            parsed.one_line().to_string(),
            format!("{A}:1-5:11-18, {B}:1-3")
        );
        assert_eq!(parsed.count(), 5 + 8 + 3);
        assert_eq!(parsed.uuids().collect::<Vec<_>>(), vec![A, B]);
    }

    #[test]
    fn normalises_case_order_overlap_and_repeats() {
        let upper = B.to_uppercase();
        let parsed = set(&format!(" {upper}:3 , {A}:7-9:1-5:6 ,{B}:1-2:2-3,,"));
        assert_eq!(parsed.to_string(), format!("{A}:1-9,\n{B}:1-3"));
        assert!(parsed.contains(&upper, 2));
        assert!(!parsed.contains(B, 4));
    }

    #[test]
    fn empty_forms() {
        assert!(set("").is_empty());
        assert!(set("  ,\n, ").is_empty());
        assert!(set(A).is_empty(), "a bare UUID adds nothing, as in MySQL");
        assert_eq!(GtidSet::default().to_string(), "");
    }

    #[test]
    fn errors_name_the_position() {
        let cases: &[(String, usize, GtidProblem)] = &[
            (format!("{A}:0"), 37, GtidProblem::ZeroGno),
            (
                format!("{A}:5-3"),
                37,
                GtidProblem::ReversedInterval { start: 5, end: 3 },
            ),
            (format!("{A}:"), 37, GtidProblem::ExpectedNumber),
            (format!("{A}:1x"), 38, GtidProblem::UnexpectedCharacter),
            (
                format!("{A}:t234567890123456789012345678901234:1"),
                37,
                GtidProblem::InvalidTag,
            ),
            (format!("{A}:tag:"), 41, GtidProblem::ExpectedNumber),
            (
                format!("{A}:99999999999999999999"),
                37,
                GtidProblem::GnoTooLarge,
            ),
            (
                "3e11fa47-71ca-11e1-9e33:1".to_string(),
                23,
                GtidProblem::ExpectedUuid,
            ),
            (format!("{A}:1, zz"), 40, GtidProblem::ExpectedUuid),
            (format!("{A}0:1"), 0, GtidProblem::ExpectedUuid),
        ];
        for (text, position, problem) in cases {
            let error = GtidSet::parse(text).unwrap_err();
            assert_eq!(
                (&error.position, &error.problem),
                (position, problem),
                "{text}"
            );
            assert!(
                error.to_string().contains(&format!("character {position}")),
                "{error}"
            );
        }
    }

    #[test]
    fn tagged_gtids_are_distinct_transactions_and_print_as_mysql_does() {
        // MySQL 8.4 manual, 19.1.3.1: `UUID:TAG:NUMBER`; tags are case-insensitive.
        let parsed = set(&format!(
            "{A}:1-5:Domain_1:1-3:11, {A}:domain_1:4, {B}:_x:7"
        ));
        assert_eq!(parsed.count(), 5 + 4 + 1 + 1);
        assert!(parsed.contains(A, 5));
        assert!(!parsed.contains(A, 11), "only the tagged 11 exists");
        assert!(parsed.contains(&format!("{A}:domain_1"), 11));
        assert_eq!(
            parsed.to_string(),
            format!("{A}:1-5:domain_1:1-4:11,\n{B}:_x:7")
        );
        assert_eq!(set(&parsed.to_string()), parsed, "round trip");
        assert_eq!(
            parsed.excluding_uuid(&A.to_uppercase()).to_string(),
            format!("{B}:_x:7")
        );
        // The tagged transactions are extra to an untagged superset of the same UUID.
        let untagged = set(&format!("{A}:1-100"));
        assert_eq!(
            parsed.subtract(&untagged).to_string(),
            format!("{A}:domain_1:1-4:11,\n{B}:_x:7")
        );
    }

    #[test]
    fn max_gno_is_accepted() {
        let parsed = set(&format!("{A}:{MAX_GNO}"));
        assert!(parsed.contains(A, MAX_GNO));
        assert_eq!(parsed.next_gno(A), 1);
    }
}
