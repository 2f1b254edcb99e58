/** The guest owner's offline commands: nothing here talks to a broker or needs an admin token. */
export { measure } from './measure';
export { measurementGroup, measurementBuild } from './measurement-build';
export { validate } from './validate';
export { session } from './session';
export { secretBuild } from './secret-build';
export { policyFromConfigs } from './policy-from-configs';
export { igvm } from './igvm';
export { snpGroup } from './snp';
