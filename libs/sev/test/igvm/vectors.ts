import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** shared/vectors/igvm (read-only), see its MANIFEST.md. */
export const IGVM_DIR = join(__dirname, '../../../../../shared/vectors/igvm');
export const KEY_DIR = join(__dirname, '../../../../../shared/vectors/measure/sev-snp-measure/keyfile');
export const VMSA_DIR = join(__dirname, '../../../../../shared/vectors/measure/derived/vmsa');
export const FIXTURE_DIR = join(__dirname, '../../../../../shared/vectors/measure/sev-snp-measure/fixtures');
export const readVector = (name: string): Buffer => readFileSync(join(IGVM_DIR, name));

/** MANIFEST §1: file, --native-zero digest (= the upstream A vector), default digest. */
export const SNP_A: [string, string, string][] = [
  [
    'snp-A1.igvm',
    '329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198',
    'fde6c791e75d1e898ae7c7a8fcf38695a27d20850ac683a6be44ed1e0c4a31875bcdf123ca2abbe0658b880449e78841',
  ],
  [
    'snp-A2.igvm',
    'ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5',
    '6b4385ff1becea1ad70cbccc397e01cdf59a23c81c8202d384215fc8808999ae71339304bd1e465a21ae0a888f7b20a7',
  ],
  [
    'snp-A4.igvm',
    '803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977',
    '0ac7cc94d8911ed67707b2fe90c10a5e632beb0b980da63b87eca233f7d15f4b8b9f6ef452b2ea4c48268854e7d53160',
  ],
  [
    'snp-A5.igvm',
    '6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa',
    '054ab38f2d06e944c72b9188e69ff0c2df63930b30fc82e873bcead9e268702687d9b33608cc39956138cada3ff6f15c',
  ],
  [
    'snp-A6.igvm',
    '0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb',
    '9f3bcf2800cd1876ccc7537c19862174631de10ae6c5c900d45b75b74620c1cf094ff3c58ec2046fc40438953f87f042',
  ],
  [
    'snp-A7.igvm',
    '0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056',
    'eb0a1dd29702903be3484a1833603e1cb1334e2bb42169b53b44d6db6210f829cf8acdd478301087fc752ca15acf8420',
  ],
  [
    'snp-A8.igvm',
    '5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e',
    'd126ac7a672fff457a5038c92bde02f5a9581d36778d2cf270c0258fa99744a71d2b10a6a3ec4bddb20a757778ee881e',
  ],
  [
    'snp-A9.igvm',
    '5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d',
    '5de6591eed66bfe6c2014ce287e2c3a4c7c727cdbd4b8292377839501275301b49bb60078f4ae720196e51d76d0b29cb',
  ],
  [
    'snp-A10.igvm',
    'e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b',
    'a38fed690f731a56565837c738b079fd2b39f45b735d818ec335373633f6aea7eedff951a45005ea5b001b0151ec5b83',
  ],
  [
    'snp-A11.igvm',
    '19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d',
    '8a67b552a568f5bf2ad35b97990030d4b98e0be2bea716e8f028042fe3f1ede7aef4b96201b421cbf9cd13c7d985b8dd',
  ],
  [
    'snp-A12.igvm',
    '4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942',
    '11d0954cc5cc94dd9f4545ba92734f56756e04eb3b5e8f8ae27673a71287ba873e6e29154d7d9d2be8993e703c55e1a9',
  ],
  [
    'snp-A13.igvm',
    '5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5',
    'a20cb2bc995d0546c48956281060f16e4ee68698b759d44588bbf12d8db75b277805d0682548785fbaa04a74b8e0bc0b',
  ],
  [
    'snp-A14.igvm',
    '28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385',
    'afa1f41c2a6c1d1bffcc551f6527aa92aa05232813de0668ddee0f84be9d27145bffa49ec1159c0cc5377a856b81df3e',
  ],
  [
    'snp-A15.igvm',
    'da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005',
    'd9c9013b9feb324b26a3a3076009e63b2ad9e348360d083e400faa7c06c69d12793684513add3058c8304ba34d48bf36',
  ],
];

/** MANIFEST §5: every rejected file and igvm 0.4.0's error variant. */
export const PARSE_ERRORS: [string, string][] = [
  ['err-magic', 'InvalidFixedHeader'],
  ['err-format-version', 'InvalidFixedHeader'],
  ['err-total-size', 'InvalidFixedHeader'],
  ['err-no-file-data', 'InvalidFixedHeader'],
  ['err-checksum', 'InvalidChecksum'],
  ['err-checksum-vh-byte', 'InvalidChecksum'],
  ['err-pagedata-reserved', 'ReservedNotZero'],
  ['err-pagedata-unaligned', 'UnalignedAddress'],
  ['err-pagedata-type', 'InvalidPageDataType'],
  ['err-pagedata-offset-range', 'InvalidDataSize'],
  ['err-pagedata-length', 'InvalidVariableHeaderType'],
  ['err-unknown-directive', 'InvalidVariableHeaderType'],
  ['err-optional-bit-type', 'InvalidBinaryVariableHeaderSection'],
  ['err-type-gap-range', 'InvalidBinaryVariableHeaderSection'],
  ['err-section-order', 'InvalidBinaryVariableHeaderSection'],
  ['err-compat-mask-two-bits', 'InvalidCompatibilityMask'],
  ['err-platform-version', 'InvalidPlatformVersion'],
  ['err-platform-type', 'InvalidPlatformType'],
  ['err-highest-vtl', 'InvalidVtl'],
  ['err-native-shared-gpa', 'InvalidSharedGpaBoundary'],
  ['err-duplicate-platform', 'MultiplePlatformHeadersWithSameIsolation'],
  ['err-no-platform', 'NoPlatformHeaders'],
  ['err-policy-reserved', 'ReservedNotZero'],
  ['err-vmsa-tail-nonzero', 'InvalidVmsa'],
  ['err-vp-mask-unknown', 'InvalidVpContextPlatformType'],
  ['err-vp-unaligned', 'UnalignedAddress'],
  ['err-param-insert-no-area', 'InvalidParameterAreaIndex'],
  ['err-param-area-twice', 'InvalidParameterAreaIndex'],
  ['err-param-insert-twice', 'InvalidParameterAreaIndex'],
  ['err-param-area-size', 'UnalignedSize'],
];
