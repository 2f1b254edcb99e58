export { type XmlDocument, type XmlElement, type XmlNode, attr, childElement, childElements, element, leadingText, select, type Step, textOf } from './dom';
export { parseXml, XmlError } from './parse';
export { serializeXml } from './serialize';
