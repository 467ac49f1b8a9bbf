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
  /** Explain cell / Fix error add the variables the cell reads and the cells defining them */
  autoVariables: boolean;
  /** Agent mode: model requests per turn before it stops */
  agentStepLimit: number;
  /** Agent mode: "first" (the first request must call a tool), "auto" or "required" */
  agentToolChoice: 'first' | 'auto' | 'required';
}

export const DEFAULT_SETTINGS: IMiniCPMSettings = {
  defaultModel: '',
  temperature: 0.7,
  maxTokens: 512,
  sendNotebookByDefault: false,
  sendImagesByDefault: true,
  notebookTokenBudget: 3000,
  sendActionsAtOnce: false,
  autoVariables: true,
  agentStepLimit: 8,
  agentToolChoice: 'first'
};
