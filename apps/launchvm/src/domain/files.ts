import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { configError } from '../errors';
import type { SevDomain } from './sev-domain';

/** libvirt wants absolute paths; relative ones are taken from the XML file's directory so examples stay portable. */
export function domainPath(xmlDir: string, path: string): string {
  return isAbsolute(path) ? path : resolve(xmlDir, path);
}

export function readDomainFile(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw configError(`cannot read the ${what} ${path}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

export interface DomainFiles {
  firmware: Buffer;
  kernel?: Buffer;
  initrd?: Buffer;
}

export function readDomainFiles(domain: SevDomain, xmlDir: string): DomainFiles {
  return {
    firmware: readDomainFile('firmware (<loader>)', domainPath(xmlDir, domain.loader.path)),
    kernel: domain.kernel ? readDomainFile('kernel', domainPath(xmlDir, domain.kernel)) : undefined,
    initrd: domain.initrd ? readDomainFile('initrd', domainPath(xmlDir, domain.initrd)) : undefined,
  };
}
