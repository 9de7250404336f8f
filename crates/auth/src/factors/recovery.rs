//! Recovery codes: ten single-use codes shown once when the first factor is enrolled, for the
//! day the phone is lost. Each has 50 random bits, so a fast hash (SHA-256) is as good as a
//! slow one; the store keeps only hashes.

use rand::Rng;

use crate::secret::token_hash;

/// How many codes a set has.
pub const COUNT: usize = 10;
const LEN: usize = 10;
/// Crockford's base32 alphabet: no `i`, `l`, `o` or `u` to misread.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new set of codes, formatted to be read and typed: `xxxxx-xxxxx`.
pub fn generate() -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    (0..COUNT)
        .map(|_| {
            let code: String = (0..LEN)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect();
            format!("{}-{}", &code[..5], &code[5..])
        })
        .collect()
}

/// The code as typed, in the one form its hash is taken of: lower case, without spaces or
/// dashes, the letters people confuse with digits read as those digits. `None` when it cannot
/// be a recovery code at all.
pub fn normalize(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_lowercase() {
            'i' | 'l' => '1',
            'o' => '0',
            other => other,
        })
        .collect();
    (code.len() == LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// What the store keeps of a normalized code.
pub fn hash(normalized: &str) -> String {
    token_hash(&format!("recovery-code:{normalized}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_readable_and_normalize_forgivingly() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), COUNT);
        for code in &codes {
            assert_eq!(code.len(), 11);
            let normalized = normalize(code).unwrap();
            assert_eq!(normalize(&code.to_uppercase()), Some(normalized.clone()));
            assert_eq!(normalize(&normalized), Some(normalized));
        }
        assert_eq!(normalize("abcde-fghij"), normalize("ABCDE FGH1J"));
        assert_eq!(normalize("0o0o0-lili1"), Some("0000011111".into()));
        assert_eq!(
            normalize("123456"),
            None,
            "a TOTP code is not a recovery code"
        );
        assert_eq!(normalize("abcde-fghiu"), None, "u is not in the alphabet");
        assert_ne!(hash("0000011111"), hash("0000011112"));
    }
}
