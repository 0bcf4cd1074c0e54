package org.jqcowfs.qcow2.crypto;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import java.nio.ByteBuffer;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;

/**
 * {@link Xts} against the test vectors of IEEE 1619-2007 Annex B (XTS-AES-128): vectors 1 to 3 (32
 * bytes: the first two blocks of a sector, whose tweaks do not depend on the rest) and 4 (a whole
 * 512-byte data unit), each encrypted and decrypted.
 */
class XtsTest {
  private static final HexFormat HEX = HexFormat.of();

  private static void check(String key, long sector, byte[] plain, String cipher) {
    byte[] want = HEX.parseHex(cipher);
    byte[] sectorBytes = new byte[512];
    System.arraycopy(plain, 0, sectorBytes, 0, plain.length);
    Xts xts = new Xts(HEX.parseHex(key));
    ByteBuffer b = ByteBuffer.wrap(sectorBytes);
    xts.encrypt(b, sector);
    byte[] got = new byte[want.length];
    b.get(0, got);
    assertArrayEquals(want, got, "encrypt");
    if (plain.length == 512) {
      xts.decrypt(b, sector);
      assertArrayEquals(plain, sectorBytes, "decrypt");
    }
  }

  private static byte[] fill(int bytes, int value) {
    byte[] b = new byte[bytes];
    java.util.Arrays.fill(b, (byte) value);
    return b;
  }

  @Test
  void ieee1619Vector1() {
    check(
        "00".repeat(32),
        0,
        new byte[32],
        "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e");
  }

  @Test
  void ieee1619Vector2() {
    check(
        "11".repeat(16) + "22".repeat(16),
        0x3333333333L,
        fill(32, 0x44),
        "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0");
  }

  @Test
  void ieee1619Vector3() {
    check(
        "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0" + "22".repeat(16),
        0x3333333333L,
        fill(32, 0x44),
        "af85336b597afc1a900b2eb21ec949d292df4c047e0b21532186a5971a227a89");
  }

  @Test
  void ieee1619Vector4WholeSector() {
    byte[] plain = new byte[512];
    for (int i = 0; i < 512; i++) {
      plain[i] = (byte) i;
    }
    check(
        "27182818284590452353602874713526" + "31415926535897932384626433832795",
        0,
        plain,
        "27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89c"
            + "c78cf7f5e543445f8333d8fa7f56000005279fa5d8b5e4ad40e736ddb4d35412"
            + "328063fd2aab53e5ea1e0a9f332500a5df9487d07a5c92cc512c8866c7e860ce"
            + "93fdf166a24912b422976146ae20ce846bb7dc9ba94a767aaef20c0d61ad0265"
            + "5ea92dc4c4e41a8952c651d33174be51a10c421110e6d81588ede82103a252d8"
            + "a750e8768defffed9122810aaeb99f9172af82b604dc4b8e51bcb08235a6f434"
            + "1332e4ca60482a4ba1a03b3e65008fc5da76b70bf1690db4eae29c5f1badd03c"
            + "5ccf2a55d705ddcd86d449511ceb7ec30bf12b1fa35b913f9f747a8afd1b130e"
            + "94bff94effd01a91735ca1726acd0b197c4e5b03393697e126826fb6bbde8ecc"
            + "1e08298516e2c9ed03ff3c1b7860f6de76d4cecd94c8119855ef5297ca67e9f3"
            + "e7ff72b1e99785ca0a7e7720c5b36dc6d72cac9574c8cbbc2f801e23e56fd344"
            + "b07f22154beba0f08ce8891e643ed995c94d9a69c9f1b5f499027a78572aeebd"
            + "74d20cc39881c213ee770b1010e4bea718846977ae119f7a023ab58cca0ad752"
            + "afe656bb3c17256a9f6e9bf19fdd5a38fc82bbe872c5539edb609ef4f79c203e"
            + "bb140f2e583cb2ad15b4aa5b655016a8449277dbd477ef2c8d6c017db738b18d"
            + "eb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568");
  }
}
