/** The sidebar's settings (schema/plugin.json). */
export interface IMiniCPMSettings {
  defaultModel: string;
  temperature: number;
  maxTokens: number;
  sendNotebookByDefault: boolean;
  sendImagesByDefault: boolean;
  notebookTokenBudget: number;
  /** one-click actions (Explain cell, Fix error, Explain image) send at once (else: review) */
  sendActionsAtOnce: boolean;
}

export const DEFAULT_SETTINGS: IMiniCPMSettings = {
  defaultModel: '',
  temperature: 0.7,
  maxTokens: 512,
  sendNotebookByDefault: false,
  sendImagesByDefault: true,
  notebookTokenBudget: 3000,
  sendActionsAtOnce: false
};
