//! Python's `fnmatch.fnmatchcase` for one path component, which is how python-tuf (the reference
//! implementation) matches a delegation's `paths` patterns. Written by hand because the glob crates
//! differ from it in corner cases (`[!...]`, a `]` first in a set, an unclosed `[`, reversed
//! ranges), and a client and a repository that disagree on which role may sign a target would
//! accept or refuse what python-tuf does not.

enum Token {
    Literal(char),
    AnyChar,
    AnyRun,
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

fn compile(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => {
                if !matches!(tokens.last(), Some(Token::AnyRun)) {
                    tokens.push(Token::AnyRun);
                }
            }
            '?' => tokens.push(Token::AnyChar),
            '[' => match parse_set(&chars, i) {
                Some((token, next)) => {
                    tokens.push(token);
                    i = next;
                }
                None => tokens.push(Token::Literal('[')),
            },
            other => tokens.push(Token::Literal(other)),
        }
    }
    tokens
}

/// Parses a set starting just after its `[`; `None` when it has no closing `]` (then the `[` is a
/// literal, as in Python).
fn parse_set(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut j = start;
    if chars.get(j) == Some(&'!') {
        j += 1;
    }
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    while j < chars.len() && chars[j] != ']' {
        j += 1;
    }
    if j >= chars.len() {
        return None;
    }
    let mut body = &chars[start..j];
    let negated = body.first() == Some(&'!');
    if negated {
        body = &body[1..];
    }
    let mut ranges = Vec::new();
    let mut k = 0;
    while k < body.len() {
        if k + 2 < body.len() && body[k + 1] == '-' {
            let (lo, hi) = (body[k], body[k + 2]);
            // Python drops reversed ranges such as `z-a`: they match nothing.
            if lo <= hi {
                ranges.push((lo, hi));
            }
            k += 3;
        } else {
            ranges.push((body[k], body[k]));
            k += 1;
        }
    }
    Some((Token::Set { negated, ranges }, j + 1))
}

fn matches_one(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::AnyChar => true,
        Token::Set { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
        Token::AnyRun => unreachable!("runs are handled by the matcher"),
    }
}

/// Whether `name` matches the shell-style `pattern`, case-sensitively.
pub fn fnmatch(name: &str, pattern: &str) -> bool {
    let tokens = compile(pattern);
    let name: Vec<char> = name.chars().collect();
    // Greedy matching with one backtrack point (the latest `*`): linear in practice and never
    // exponential, unlike naive recursion.
    let (mut t, mut n) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::AnyRun) => {
                backtrack = Some((t, n));
                t += 1;
            }
            Some(token) if matches_one(token, name[n]) => {
                t += 1;
                n += 1;
            }
            _ => match backtrack {
                Some((star, from)) => {
                    t = star + 1;
                    n = from + 1;
                    backtrack = Some((star, from + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..]
        .iter()
        .all(|token| matches!(token, Token::AnyRun))
}

#[cfg(test)]
mod tests {
    use super::fnmatch;

    #[test]
    fn behaves_like_python_fnmatchcase() {
        // Expected values come from Python 3.11's fnmatch.fnmatchcase.
        let cases = [
            ("abc", "abc", true),
            ("abc", "a*", true),
            ("abc", "*c", true),
            ("abc", "*", true),
            ("", "*", true),
            ("", "", true),
            ("a", "", false),
            ("abc", "a?c", true),
            ("ac", "a?c", false),
            ("abc", "a[b]c", true),
            ("abc", "a[!b]c", false),
            ("axc", "a[!b]c", true),
            ("a]c", "a[]]c", true),
            ("a]c", "a[!]]c", false),
            ("a[c", "a[c", true),
            ("a-c", "a[a-]c", true),
            ("abc", "a[z-a]c", false),
            ("abc", "a[!z-a]c", true),
            ("ABC", "abc", false),
            ("a.txt", "*.txt", true),
            ("a.txt.gz", "*.txt", false),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
                "*a*a*a*a*a*a*a*a*c",
                false,
            ),
            ("x*y", "x[*]y", true),
            ("a\nb", "a*b", true),
        ];
        for (name, pattern, expected) in cases {
            assert_eq!(fnmatch(name, pattern), expected, "{name:?} vs {pattern:?}");
        }
    }
}
