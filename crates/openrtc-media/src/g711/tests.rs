//! Tests of the G.711 codecs against Python's `audioop` (3.11), the reference the module
//! matches bit for bit.

use super::*;

// Generated once with Python 3.11's `audioop`:
//   struct.unpack('<256h', audioop.ulaw2lin(bytes(range(256)), 2))
/// `audioop.ulaw2lin` of every code, in code order.
const AUDIOOP_ULAW_TO_LINEAR: [i16; 256] = [
    -32124, -31100, -30076, -29052, -28028, -27004, -25980, -24956, -23932, -22908, -21884, -20860,
    -19836, -18812, -17788, -16764, -15996, -15484, -14972, -14460, -13948, -13436, -12924, -12412,
    -11900, -11388, -10876, -10364, -9852, -9340, -8828, -8316, -7932, -7676, -7420, -7164, -6908,
    -6652, -6396, -6140, -5884, -5628, -5372, -5116, -4860, -4604, -4348, -4092, -3900, -3772,
    -3644, -3516, -3388, -3260, -3132, -3004, -2876, -2748, -2620, -2492, -2364, -2236, -2108,
    -1980, -1884, -1820, -1756, -1692, -1628, -1564, -1500, -1436, -1372, -1308, -1244, -1180,
    -1116, -1052, -988, -924, -876, -844, -812, -780, -748, -716, -684, -652, -620, -588, -556,
    -524, -492, -460, -428, -396, -372, -356, -340, -324, -308, -292, -276, -260, -244, -228, -212,
    -196, -180, -164, -148, -132, -120, -112, -104, -96, -88, -80, -72, -64, -56, -48, -40, -32,
    -24, -16, -8, 0, 32124, 31100, 30076, 29052, 28028, 27004, 25980, 24956, 23932, 22908, 21884,
    20860, 19836, 18812, 17788, 16764, 15996, 15484, 14972, 14460, 13948, 13436, 12924, 12412,
    11900, 11388, 10876, 10364, 9852, 9340, 8828, 8316, 7932, 7676, 7420, 7164, 6908, 6652, 6396,
    6140, 5884, 5628, 5372, 5116, 4860, 4604, 4348, 4092, 3900, 3772, 3644, 3516, 3388, 3260, 3132,
    3004, 2876, 2748, 2620, 2492, 2364, 2236, 2108, 1980, 1884, 1820, 1756, 1692, 1628, 1564, 1500,
    1436, 1372, 1308, 1244, 1180, 1116, 1052, 988, 924, 876, 844, 812, 780, 748, 716, 684, 652,
    620, 588, 556, 524, 492, 460, 428, 396, 372, 356, 340, 324, 308, 292, 276, 260, 244, 228, 212,
    196, 180, 164, 148, 132, 120, 112, 104, 96, 88, 80, 72, 64, 56, 48, 40, 32, 24, 16, 8, 0,
];

// Generated once with Python 3.11's `audioop`:
//   struct.unpack('<256h', audioop.alaw2lin(bytes(range(256)), 2))
/// `audioop.alaw2lin` of every code, in code order.
const AUDIOOP_ALAW_TO_LINEAR: [i16; 256] = [
    -5504, -5248, -6016, -5760, -4480, -4224, -4992, -4736, -7552, -7296, -8064, -7808, -6528,
    -6272, -7040, -6784, -2752, -2624, -3008, -2880, -2240, -2112, -2496, -2368, -3776, -3648,
    -4032, -3904, -3264, -3136, -3520, -3392, -22016, -20992, -24064, -23040, -17920, -16896,
    -19968, -18944, -30208, -29184, -32256, -31232, -26112, -25088, -28160, -27136, -11008, -10496,
    -12032, -11520, -8960, -8448, -9984, -9472, -15104, -14592, -16128, -15616, -13056, -12544,
    -14080, -13568, -344, -328, -376, -360, -280, -264, -312, -296, -472, -456, -504, -488, -408,
    -392, -440, -424, -88, -72, -120, -104, -24, -8, -56, -40, -216, -200, -248, -232, -152, -136,
    -184, -168, -1376, -1312, -1504, -1440, -1120, -1056, -1248, -1184, -1888, -1824, -2016, -1952,
    -1632, -1568, -1760, -1696, -688, -656, -752, -720, -560, -528, -624, -592, -944, -912, -1008,
    -976, -816, -784, -880, -848, 5504, 5248, 6016, 5760, 4480, 4224, 4992, 4736, 7552, 7296, 8064,
    7808, 6528, 6272, 7040, 6784, 2752, 2624, 3008, 2880, 2240, 2112, 2496, 2368, 3776, 3648, 4032,
    3904, 3264, 3136, 3520, 3392, 22016, 20992, 24064, 23040, 17920, 16896, 19968, 18944, 30208,
    29184, 32256, 31232, 26112, 25088, 28160, 27136, 11008, 10496, 12032, 11520, 8960, 8448, 9984,
    9472, 15104, 14592, 16128, 15616, 13056, 12544, 14080, 13568, 344, 328, 376, 360, 280, 264,
    312, 296, 472, 456, 504, 488, 408, 392, 440, 424, 88, 72, 120, 104, 24, 8, 56, 40, 216, 200,
    248, 232, 152, 136, 184, 168, 1376, 1312, 1504, 1440, 1120, 1056, 1248, 1184, 1888, 1824, 2016,
    1952, 1632, 1568, 1760, 1696, 688, 656, 752, 720, 560, 528, 624, 592, 944, 912, 1008, 976, 816,
    784, 880, 848,
];

// Generated once with Python 3.11's `audioop`: FNV-1a (64-bit) over the bytes of
//   audioop.lin2ulaw(struct.pack('<65536h', *range(-32768, 32768)), 2)
// (and `lin2alaw` for A-law): one code per sample, samples in ascending order.
/// FNV-1a of `audioop.lin2ulaw` over every `i16` sample, ascending.
const AUDIOOP_ULAW_ENCODE_FNV1A: u64 = 0xd5ee_23f7_d0ff_ae91;
/// FNV-1a of `audioop.lin2alaw` over every `i16` sample, ascending.
const AUDIOOP_ALAW_ENCODE_FNV1A: u64 = 0xf030_666e_b780_cf25;

/// FNV-1a, 64-bit.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Every `i16`, ascending.
fn every_sample() -> Vec<i16> {
    (i16::MIN..=i16::MAX).collect()
}

#[test]
fn ulaw_decode_table_equals_audioop() {
    for code in 0..=u8::MAX {
        assert_eq!(
            ulaw_to_linear(code),
            AUDIOOP_ULAW_TO_LINEAR[usize::from(code)],
            "code {code:#04x}"
        );
    }
}

#[test]
fn alaw_decode_table_equals_audioop() {
    for code in 0..=u8::MAX {
        assert_eq!(
            alaw_to_linear(code),
            AUDIOOP_ALAW_TO_LINEAR[usize::from(code)],
            "code {code:#04x}"
        );
    }
}

#[test]
fn ulaw_reference_values() {
    assert_eq!(ulaw_to_linear(0x00), -32124);
    assert_eq!(ulaw_to_linear(0x80), 32124);
    assert_eq!(ulaw_to_linear(0xFF), 0);
    assert_eq!(ulaw_to_linear(0x7F), 0);
    assert_eq!(ulaw_to_linear(0x7E), -8);
    assert_eq!(ulaw_to_linear(0xFE), 8);
}

#[test]
fn alaw_reference_values() {
    assert_eq!(alaw_to_linear(0xD5), 8);
    assert_eq!(alaw_to_linear(0x55), -8);
    assert_eq!(alaw_to_linear(0x2A), -32256);
    assert_eq!(alaw_to_linear(0xAA), 32256);
}

#[test]
fn ulaw_every_code_round_trips_except_negative_zero() {
    let mut changed = Vec::new();
    for code in 0..=u8::MAX {
        let again = linear_to_ulaw(ulaw_to_linear(code));
        if again != code {
            changed.push((code, again));
        }
    }
    // −0 (0x7F) decodes to 0, which encodes as +0 (0xFF); every other code survives.
    assert_eq!(changed, vec![(0x7F, 0xFF)]);
}

#[test]
fn alaw_every_code_round_trips() {
    for code in 0..=u8::MAX {
        assert_eq!(
            linear_to_alaw(alaw_to_linear(code)),
            code,
            "code {code:#04x}"
        );
    }
}

#[test]
fn ulaw_pcm_extremes_encode_to_the_standard_codes() {
    assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
    assert_eq!(linear_to_ulaw(0), 0xFF);
    assert_eq!(linear_to_ulaw(1), 0xFF);
    // Rounded toward −∞ as in `audioop`: −1 is the smallest negative step, not −0.
    assert_eq!(linear_to_ulaw(-1), 0x7E);
}

#[test]
fn alaw_pcm_extremes_encode_to_the_standard_codes() {
    assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
    assert_eq!(linear_to_alaw(0), 0xD5);
    assert_eq!(linear_to_alaw(1), 0xD5);
    assert_eq!(linear_to_alaw(-1), 0x55);
}

#[test]
fn ulaw_encoding_of_every_sample_equals_audioop() {
    let mut codes = Vec::new();
    encode_ulaw(&every_sample(), &mut codes);
    assert_eq!(codes.len(), 65_536);
    assert_eq!(fnv1a(&codes), AUDIOOP_ULAW_ENCODE_FNV1A);
}

#[test]
fn alaw_encoding_of_every_sample_equals_audioop() {
    let mut codes = Vec::new();
    encode_alaw(&every_sample(), &mut codes);
    assert_eq!(codes.len(), 65_536);
    assert_eq!(fnv1a(&codes), AUDIOOP_ALAW_ENCODE_FNV1A);
}

/// Checks that `encode` quantizes like G.711: monotonic, every sample between the neighbours
/// of the value its code decodes to, and samples past the extremes clipped to them.
fn assert_quantizes(decode: fn(u8) -> i16, encode: fn(i16) -> u8) {
    let mut values: Vec<i16> = (0..=u8::MAX).map(decode).collect();
    values.sort_unstable();
    values.dedup();
    let (lowest, highest) = (values[0], values[values.len() - 1]);
    let mut previous = i16::MIN;
    for sample in every_sample() {
        let value = decode(encode(sample));
        assert!(value >= previous, "{sample}: {value} after {previous}");
        previous = value;
        let index = values
            .binary_search(&value)
            .expect("a decoded value is in the table");
        let below = values[index.saturating_sub(1)];
        let above = values[(index + 1).min(values.len() - 1)];
        if sample < lowest {
            assert_eq!(value, lowest, "{sample}");
        } else if sample > highest {
            assert_eq!(value, highest, "{sample}");
        } else {
            assert!(
                (below..=above).contains(&sample),
                "{sample}: {below} {value} {above}"
            );
        }
    }
}

#[test]
fn ulaw_encoding_quantizes_monotonically() {
    assert_quantizes(ulaw_to_linear, linear_to_ulaw);
}

#[test]
fn alaw_encoding_quantizes_monotonically() {
    assert_quantizes(alaw_to_linear, linear_to_alaw);
}

#[test]
fn slice_codecs_append_in_order() {
    let mut samples = vec![7_i16];
    decode_ulaw(&[0x00, 0xFF, 0x80], &mut samples);
    assert_eq!(samples, vec![7, -32124, 0, 32124]);

    let mut codes = vec![0x11_u8];
    encode_ulaw(&[-32124, 0, 32124], &mut codes);
    assert_eq!(codes, vec![0x11, 0x00, 0xFF, 0x80]);

    let mut samples = Vec::new();
    decode_alaw(&[0x2A, 0xD5, 0x55, 0xAA], &mut samples);
    assert_eq!(samples, vec![-32256, 8, -8, 32256]);

    let mut codes = Vec::new();
    encode_alaw(&[-32256, 8, -8, 32256], &mut codes);
    assert_eq!(codes, vec![0x2A, 0xD5, 0x55, 0xAA]);
}
