//! G.711 μ-law and A-law: the 8-bit companded audio of telephone calls, to and from 16-bit
//! linear PCM.
//!
//! The algorithm is ITU-T G.711's segment (chord) and quantization-step layout in the
//! segment/bias form of the widely used public-domain reference code, which is what Python's
//! `audioop` (and so pipecat's telephony serializers, the reference peer of this runtime)
//! runs: both directions here are bit-for-bit `audioop`'s, for every code and every `i16`
//! sample (the tests check the whole decode tables and every one of the 65,536 encodings).
//!
//! - Decoding is a lookup in a 256-entry table built at compile time by a `const fn`.
//! - Encoding is arithmetic: sign, clip, bias (μ-law), segment search, 4 mantissa bits, and
//!   the law's bit inversion. μ-law uses the sample's top 14 bits, A-law its top 13.
//! - μ-law has two codes for zero, `0xFF` (+0) and `0x7F` (−0); both decode to 0, and 0
//!   encodes to `0xFF`, so `0x7F` is the one code of either law that does not survive a
//!   decode and re-encode. A-law has no code for zero: its smallest values are ±8.
//! - Negative samples: the 14- or 13-bit value is the sample shifted right arithmetically
//!   (rounded toward −∞), as in `audioop`. ITU-T G.191's software tool takes the one's
//!   complement instead and so differs for some negative samples (−1 is `0x7E` here, `0x7F`
//!   there); matching the reference peer byte for byte was preferred.
//!
//! Written here rather than taken from crates.io: the maintained small crate
//! (`audio-codec-algorithms`) needs a newer Rust than this workspace's `rust-version`, and its
//! μ-law encoder follows G.191's rounding of negative samples rather than `audioop`'s; the
//! other (`oxideav-g711`) brings a codec framework along. The code is a few dozen lines.
//!
//! Every function is pure and allocates only by growing the `out` vector it is given.

/// μ-law's bias, in the 14-bit domain: 33 (0x84 in the 16-bit domain).
const ULAW_BIAS: i32 = 0x84 >> 2;

/// The largest μ-law magnitude, in the 14-bit domain, before the bias is added.
const ULAW_CLIP: i32 = 8159;

/// The top of each μ-law segment, in the 14-bit domain after the bias.
const ULAW_SEGMENT_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];

/// The top of each A-law segment, in the 13-bit domain.
const ALAW_SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// Every μ-law code's linear value, built at compile time.
const ULAW_TO_LINEAR: [i16; 256] = build_ulaw_table();

/// Every A-law code's linear value, built at compile time.
const ALAW_TO_LINEAR: [i16; 256] = build_alaw_table();

/// The 256 μ-law values, one per code (a `const fn` cannot call through a function pointer,
/// hence one builder per law).
const fn build_ulaw_table() -> [i16; 256] {
    let mut table = [0_i16; 256];
    let mut code = 0_usize;
    while code < 256 {
        table[code] = ulaw_code_value(code as u8);
        code += 1;
    }
    table
}

/// The 256 A-law values, one per code.
const fn build_alaw_table() -> [i16; 256] {
    let mut table = [0_i16; 256];
    let mut code = 0_usize;
    while code < 256 {
        table[code] = alaw_code_value(code as u8);
        code += 1;
    }
    table
}

/// The linear value of a μ-law code, computed from its bits (for the table).
const fn ulaw_code_value(code: u8) -> i16 {
    let inverted = !code;
    let mantissa = (inverted & 0x0F) as i32;
    let segment = ((inverted & 0x70) >> 4) as i32;
    let biased = ((mantissa << 3) + 0x84) << segment;
    let value = if inverted & 0x80 != 0 {
        0x84 - biased
    } else {
        biased - 0x84
    };
    value as i16
}

/// The linear value of an A-law code, computed from its bits (for the table).
const fn alaw_code_value(code: u8) -> i16 {
    let toggled = code ^ 0x55;
    let mantissa = ((toggled & 0x0F) as i32) << 4;
    let segment = ((toggled & 0x70) >> 4) as i32;
    let magnitude = match segment {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        _ => (mantissa + 0x108) << (segment - 1),
    };
    let value = if toggled & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    };
    value as i16
}

/// The first segment whose top is at or above `magnitude`, or 8 when it is past them all.
const fn segment_of(magnitude: i32, segment_end: &[i32; 8]) -> i32 {
    let mut segment = 0;
    while segment < 8 {
        if magnitude <= segment_end[segment] {
            return segment as i32;
        }
        segment += 1;
    }
    8
}

/// The linear 16-bit value of one μ-law code (−32124 ..= 32124).
#[must_use]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TO_LINEAR[usize::from(code)]
}

/// The μ-law code of one linear 16-bit sample (its top 14 bits count).
#[must_use]
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    let value = (sample >> 2) as i32;
    let (magnitude, mask) = if value < 0 {
        (-value, 0x7F)
    } else {
        (value, 0xFF)
    };
    let magnitude = if magnitude > ULAW_CLIP {
        ULAW_CLIP
    } else {
        magnitude
    } + ULAW_BIAS;
    let segment = segment_of(magnitude, &ULAW_SEGMENT_END);
    let code = if segment >= 8 {
        0x7F
    } else {
        (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    };
    (code ^ mask) as u8
}

/// The linear 16-bit value of one A-law code (−32256 ..= 32256, never 0).
#[must_use]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TO_LINEAR[usize::from(code)]
}

/// The A-law code of one linear 16-bit sample (its top 13 bits count).
#[must_use]
pub const fn linear_to_alaw(sample: i16) -> u8 {
    let value = (sample >> 3) as i32;
    let (magnitude, mask) = if value < 0 {
        (-value - 1, 0x55)
    } else {
        (value, 0xD5)
    };
    let segment = segment_of(magnitude, &ALAW_SEGMENT_END);
    let code = if segment >= 8 {
        0x7F
    } else {
        let shift = if segment < 2 { 1 } else { segment };
        (segment << 4) | ((magnitude >> shift) & 0x0F)
    };
    (code ^ mask) as u8
}

/// Appends the linear samples of μ-law `codes` to `out`, one sample per code.
pub fn decode_ulaw(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&code| ulaw_to_linear(code)));
}

/// Appends the μ-law codes of linear `samples` to `out`, one code per sample.
pub fn encode_ulaw(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&sample| linear_to_ulaw(sample)));
}

/// Appends the linear samples of A-law `codes` to `out`, one sample per code.
pub fn decode_alaw(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&code| alaw_to_linear(code)));
}

/// Appends the A-law codes of linear `samples` to `out`, one code per sample.
pub fn encode_alaw(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&sample| linear_to_alaw(sample)));
}

#[cfg(test)]
mod tests;
