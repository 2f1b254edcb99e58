export * from '../src';
export { SnpPageType as SnpPageTypeForTest } from '@kb/sev';
