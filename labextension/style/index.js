import './base.css';
import './variables.css';
import './agent.css';
